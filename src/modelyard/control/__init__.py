"""The control plane: one database and one REST app for every plane that is not on a request path.

``settings`` and ``db`` (with ``migrations/``, every plane's Alembic revisions) are its foundation,
which the registry, routing and deploy stores build on; ``app`` composes their REST endpoints into
one app, ``server`` runs it and ``up`` runs it beside a gateway. See docs/architecture.md.
"""
