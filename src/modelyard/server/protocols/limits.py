"""Bounds on what one request can make the model server do before its model ever sees it.

Reading a body is cheap; decoding it is not, and decoding JSON cannot leave the event loop free:
``orjson.loads`` and ``np.asarray`` are single C calls that hold the GIL from start to end, so a
worker thread would stall the loop just the same. What keeps every other request answering is a
bound on the work instead:

- a compressed body inflates, in a worker thread (zlib lets go of the GIL), to at most
  ``max_inflated_bytes``, and the inflater stops there: a "zip bomb" costs that much, not what it
  would inflate to;
- the JSON of a request (an OIP request's JSON part, a TF Serving body) is at most
  ``max_json_bytes``: decoding costs about 30 ms per MiB of numbers;
- and holds at most ``max_json_containers`` arrays and objects, counted before parsing: a nested
  list costs about ten times what a number does (``[0],`` rows: about 0.12 s per MiB).

Tensors larger than that belong in the binary tensor extension, whose bytes numpy reads in place.
docs/serving.md ("Limits and security") has the measurements behind the defaults.
"""

from __future__ import annotations

from starlette.types import Receive

from modelyard.errors import ErrorKind, ModelyardError
from modelyard.server.settings import Settings
from modelyard.web.asgi import receive_body

__all__ = ["BodyLimits", "JsonTooLarge", "check_json"]

_HINT = "send large tensors with the binary tensor extension, or raise the limit"


class JsonTooLarge(ModelyardError):
    """A JSON document that would cost more to decode than the server allows per request (413)."""

    kind = ErrorKind.TOO_LARGE

    def __init__(self, what: str, limit: int, setting: str) -> None:
        super().__init__(
            f"the request's JSON {what}, more than the {limit} this server decodes per request"
            f" ({setting}); {_HINT}",
            field="body",
        )
        self.limit = limit


def check_json(data: bytes, max_bytes: int, max_containers: int) -> None:
    """Refuse ``data`` before parsing when it is over ``max_bytes``, or holds more than
    ``max_containers`` JSON arrays and objects.

    The count is of ``[`` and ``{`` bytes, some of which may sit inside strings: it errs high, never
    low. It runs at memory speed (about 1 ms per MiB), and a document shorter than the limit
    cannot hold more containers than bytes, so small requests are not counted at all.
    """
    if len(data) > max_bytes:
        raise JsonTooLarge(f"is {len(data)} bytes", max_bytes, "max_json_bytes")
    if len(data) <= max_containers:
        return
    count = data.count(b"[")
    if count <= max_containers:
        count += data.count(b"{")
    if count > max_containers:
        raise JsonTooLarge(f"holds {count} arrays and objects", max_containers, "max_json_containers")


class BodyLimits:
    """The request-body limits of one server, read once from its :class:`Settings`."""

    def __init__(self, settings: Settings) -> None:
        self.max_body_bytes = settings.max_body_bytes
        self.max_inflated_bytes = settings.max_inflated_bytes
        self.max_json_bytes = settings.max_json_bytes
        self.max_json_containers = settings.max_json_containers

    async def read(self, receive: Receive, headers: list[tuple[bytes, bytes]]) -> bytes:
        """The body: at most ``max_body_bytes`` as sent, ``max_inflated_bytes`` once inflated."""
        return await receive_body(receive, headers, self.max_body_bytes, self.max_inflated_bytes)

    def check_json(self, data: bytes) -> None:
        """Refuse JSON too costly to decode (:func:`check_json`), before parsing it."""
        check_json(data, self.max_json_bytes, self.max_json_containers)
