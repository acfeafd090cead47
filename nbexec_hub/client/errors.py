"""How the client reports failures: `NbexecAPIError`, with the HTTP status and message."""

from __future__ import annotations

from typing import Any

import requests


class NbexecAPIError(Exception):
    """A failed request: its HTTP ``status`` (None: no answer) and the server's ``message``."""

    def __init__(self, message: str, status: int | None = None, body: Any = None) -> None:
        super().__init__(f"{status} {message}" if status else message)
        self.status = status
        self.message = message
        #: the decoded JSON error body when there was one (e.g. with ``state`` for a 409)
        self.body = body

    @classmethod
    def from_response(cls, response: requests.Response) -> NbexecAPIError:
        """Build the error from a failed response, preferring its JSON ``message``."""
        body: Any = None
        message = response.reason or "HTTP error"
        try:
            body = response.json()
        except ValueError:
            text = response.text.strip()
            if text:
                message = text[:500]
        else:
            if isinstance(body, dict) and body.get("message"):
                message = str(body["message"])
        return cls(message, status=response.status_code, body=body)


class StreamInterrupted(Exception):
    """A stream ended before its final event (internal: triggers a resume)."""
