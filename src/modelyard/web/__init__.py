"""HTTP helpers every plane uses: the error table's responses, body reading, listening sockets, and
the JSON API client base. Nothing here knows a model server, a registry or a gateway."""
