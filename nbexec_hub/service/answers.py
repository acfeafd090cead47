"""What of a user's server's answer may be passed on to a caller (CONTRACT B.1).

A successful answer labelled JSON must parse as JSON; an error answer is passed on only
as the server's own JSON object, anything else becomes a JSON message of the service's,
so that nothing a server answers is ever served as something else on the hub's origin.
"""

from __future__ import annotations

import json

from .. import protocol


def is_json_or_empty(content_type: str | None, body: bytes) -> bool:
    """Whether a whole answer may be relayed as it is: not labelled JSON (a stream type,
    checked elsewhere), empty (a 202 of a shutdown, say), or JSON indeed."""
    if protocol.media_type(content_type) != protocol.JSON or not body.strip():
        return True
    try:
        protocol.parse_json(body)
    except ValueError:
        return False
    return True


def error_body(code: int, content_type: str | None, body: bytes) -> bytes:
    """The body to pass on with an upstream error status: the server's JSON object, else a
    message of ours (which never quotes what the server sent)."""
    if protocol.media_type(content_type) == protocol.JSON:
        try:
            if isinstance(protocol.parse_json(body), dict):
                return body
        except ValueError:
            pass
    message = f"The server answered {code}" + (" (not JSON)" if body else "")
    return json.dumps({"message": message, "reason": None}).encode()
