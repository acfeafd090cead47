"""The wire protocol of nbexec-hub, spelled once (CONTRACT A.3-A.5, B.4, C).

Everything both ends of a connection must agree on lives here and is imported by the
extension, the service and the clients alike: event names, the reserved parameters of a
run, the words that mean true and false, media types and stream headers, Server-Sent
Events framing (encoding and a chunk-fed, linear-time decoder), ``Last-Event-ID`` and the
service's URL shapes. The page's JavaScript (``static/js/api.js``) keeps its own copy of
the few it needs, since it has no build step, and says that it mirrors this module.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

# -- events (A.5) -------------------------------------------------------------------
NOTEBOOK_START = "notebook_start"
CELL_START = "start"
CELL_END = "end"
OUTPUT = "output"
NOTEBOOK_COMPLETE = "notebook_complete"
NOTEBOOK_ERROR = "notebook_error"
#: events that end an execution's stream
FINAL_EVENTS = (NOTEBOOK_COMPLETE, NOTEBOOK_ERROR)

def server_stopped_event(
    message: str, execution: dict[str, Any] | None, exec_id: str | None, seq: int | None
) -> dict[str, Any]:
    """The final event the service ends a relayed stream with when the server died (B.4):
    ``notebook_error`` with ``"server_stopped": true`` and the last model seen."""
    model = dict(execution or {})
    if not model.get("exec_id") and exec_id:
        model["exec_id"] = exec_id
    model["status"] = f"error: {message}"
    event: dict[str, Any] = {
        "event": NOTEBOOK_ERROR,
        "timestamp": time.time(),
        "output_path": model.get("output_path"),
        "error": message,
        "execution": model,
        "server_stopped": True,
    }
    if seq is not None:
        event["seq"] = seq
    return event


# -- a run's request (A.3) --------------------------------------------------------------
#: parameters of ``POST /api/executions`` that are not notebook parameters
RESERVED_PARAMS = frozenset(
    {"notebook", "output_path", "overwrite", "jupyter_kernel", "cell_timeout"}
)
#: words meaning true and false, in any case: boolean parameters and ``?start=``
TRUE_WORDS = ("true", "1", "yes", "on")
FALSE_WORDS = ("false", "0", "no", "off")


def parse_bool(value: str) -> bool | None:
    """True or False for one of the words above (any case, spaces around), else None."""
    word = value.strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    return None


# -- media types and headers ------------------------------------------------------------
JSON = "application/json"
NDJSON = "application/x-ndjson"
EVENT_STREAM = "text/event-stream"
#: ``X-Response-Encoding: chunked`` asks a run to stream its events
RESPONSE_ENCODING_HEADER = "X-Response-Encoding"
#: how often a stream with nothing to say sends an SSE comment, so proxies keep it open
KEEPALIVE_SECONDS = 15.0
#: headers of every stream (NDJSON or SSE): never cached, never buffered by a proxy
STREAM_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
SSE_HEADERS = {"Content-Type": f"{EVENT_STREAM}; charset=UTF-8", **STREAM_HEADERS}
NDJSON_HEADERS = {"Content-Type": NDJSON, **STREAM_HEADERS}


def media_type(content_type: str | None) -> str:
    """``application/json`` of ``application/json; charset=UTF-8``, lower case."""
    return (content_type or "").split(";", 1)[0].strip().lower()


def wants_event_stream(accept_header: str | None) -> bool:
    """Whether an Accept header asks for Server-Sent Events."""
    return EVENT_STREAM in (accept_header or "")


def wants_chunked(headers: Any) -> bool:
    """Whether a request asks a run to stream (``X-Response-Encoding: chunked``)."""
    return headers.get(RESPONSE_ENCODING_HEADER, "").strip().lower() == "chunked"


def parse_last_event_id(value: str | None) -> int | None:
    """The ``seq`` to resume after, from a Last-Event-ID header or query value."""
    if value is None or value == "":
        return None
    try:
        seq = int(value)
    except ValueError:
        return None
    return seq if seq >= 0 else None


# -- Server-Sent Events framing -----------------------------------------------------------


def is_seq(value: Any) -> bool:
    """Whether a value may be an event's ``seq`` (a non-negative int, never a bool)."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def format_event(event: dict[str, Any]) -> str:
    """One event as an SSE message, its ``seq`` as the message id (only a real seq: the
    id line is written as it is, so nothing else may ever reach it)."""
    lines = []
    if is_seq(event.get("seq")):
        lines.append(f"id: {event['seq']}")
    lines.append("data: " + json.dumps(event))
    return "\n".join(lines) + "\n\n"


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def parse_json(data: bytes | str) -> Any:
    """Strict JSON from a peer that may be hostile: no NaN/Infinity (browsers' JSON.parse
    refuses them), and a nesting too deep for the parser is a ValueError, not a crash."""
    try:
        return json.loads(data, parse_constant=_no_constants)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None


def keepalive_comment() -> str:
    """An SSE comment line: ignored by EventSource, keeps the connection warm."""
    return ": keepalive\n\n"


class LineSplitter:
    """Splits a byte stream into lines, in time linear in its size whatever the lines'
    length (a kept tail is never copied again per chunk). A line longer than `max_line`
    bytes is skipped and counted in `skipped`."""

    def __init__(self, max_line: int = 0) -> None:
        self.max_line = max_line
        self.skipped = 0
        self._parts: list[bytes] = []
        self._size = 0
        self._skipping = False

    def feed(self, chunk: bytes) -> Iterator[bytes]:
        """The complete lines `chunk` ends (without their ``\\n``)."""
        start = 0
        while True:
            end = chunk.find(b"\n", start)
            if end < 0:
                break
            piece = chunk[start:end]
            start = end + 1
            if self._skipping:
                self._skipping = False
                continue
            if self._parts:
                self._parts.append(piece)
                piece = b"".join(self._parts)
                self._parts, self._size = [], 0
            yield piece
        rest = chunk[start:]
        if rest and not self._skipping:
            self._parts.append(rest)
            self._size += len(rest)
            if self.max_line and self._size > self.max_line:
                self._parts, self._size = [], 0
                self._skipping = True
                self.skipped += 1

    @property
    def pending(self) -> int:
        """Bytes held of a line not finished yet."""
        return self._size

    def skip_current(self) -> None:
        """Drop the unfinished line, and what comes of it until its newline."""
        if self._parts:
            self._parts, self._size = [], 0
            self._skipping = True
            self.skipped += 1

    def rest(self) -> bytes:
        """What is left after the last newline (a last line without one)."""
        rest = b"".join(self._parts)
        self._parts, self._size = [], 0
        return rest


class SSEDecoder:
    """Decodes Server-Sent Events fed line by line into JSON events (comments skipped; a
    message's ``id`` becomes its event's ``seq`` when the data does not carry one)."""

    def __init__(self) -> None:
        self._data: list[str] = []
        self._last_id: str | None = None

    def line(self, line: str) -> dict[str, Any] | None:
        """Feed one line (without its newline); the event it completes, if any."""
        line = line.rstrip("\r")
        if line == "":
            if not self._data:
                return None
            data, self._data = "\n".join(self._data), []
            event = json.loads(data)
            if not isinstance(event, dict):
                return None
            if "seq" not in event and self._last_id is not None and self._last_id.isdigit():
                event["seq"] = int(self._last_id)
            return event
        if line.startswith(":"):
            return None  # a keep-alive comment
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if name == "data":
            self._data.append(value)
        elif name == "id":
            self._last_id = value
        return None


# -- sending -----------------------------------------------------------------------------


def send_at_once(handler: Any) -> None:
    """Make a tornado handler's connection send each flushed write at once (TCP_NODELAY).

    A stream writes small pieces (headers, then one event at a time). With Nagle's
    algorithm on, which tornado leaves on while a response is open, a piece waits for
    the peer to acknowledge the previous one, and a peer delaying its ACK holds each
    event back by up to 40 ms. Tornado turns it off again when the response ends.
    """
    stream = getattr(getattr(getattr(handler, "request", None), "connection", None), "stream", None)
    if stream is not None and not stream.closed():
        stream.set_nodelay(True)


# -- the service's URL shapes (B.3, B.4) -------------------------------------------------

#: where the hub's proxy serves the service, below the hub's base URL (the service is
#: named ``nbexec`` in ``c.JupyterHub.services``)
SERVICE_PREFIX = "services/nbexec/"


def server_path(user: str, server_name: str = "") -> str:
    """``users/U/server`` or ``users/U/servers/S``: a server's resource, below ``api/``."""
    if server_name:
        return f"users/{quote(user, safe='')}/servers/{quote(server_name, safe='')}"
    return f"users/{quote(user, safe='')}/server"


def executions_root(user: str, server_name: str = "") -> str:
    """``users/U`` or ``users/U/servers/S``: what ``executions`` hangs below, below ``api/``."""
    if server_name:
        return server_path(user, server_name)
    return f"users/{quote(user, safe='')}"
