"""Server-Sent Events framing and stream sending, shared by the extension and the service."""

from __future__ import annotations

import json
from typing import Any

#: how often a stream with nothing to say sends a comment, so proxies keep it open
KEEPALIVE_SECONDS = 15.0

SSE_HEADERS = {
    "Content-Type": "text/event-stream; charset=UTF-8",
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",
}


def wants_event_stream(accept_header: str | None) -> bool:
    """Whether an Accept header asks for Server-Sent Events."""
    return "text/event-stream" in (accept_header or "")


def format_event(event: dict[str, Any]) -> str:
    """One progress event as an SSE message, its ``seq`` as the message id."""
    lines = []
    if "seq" in event:
        lines.append(f"id: {event['seq']}")
    lines.append("data: " + json.dumps(event))
    return "\n".join(lines) + "\n\n"


def keepalive_comment() -> str:
    """An SSE comment line: ignored by EventSource, keeps the connection warm."""
    return ": keepalive\n\n"


def parse_last_event_id(value: str | None) -> int | None:
    """The ``seq`` to resume after, from a Last-Event-ID header or query value."""
    if value is None or value == "":
        return None
    try:
        seq = int(value)
    except ValueError:
        return None
    return seq if seq >= 0 else None


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
