"""Domain errors of nbexec-hub, shared by the extension and the service.

Nothing here knows about HTTP libraries: `nbexec_hub.http_errors` maps these
classes to status codes in one place.
"""

from __future__ import annotations

from typing import Any


class NbexecError(Exception):
    """Base class: a failure the caller can act on, with a human message."""

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        #: extra JSON fields for the error body (e.g. ``state`` for a server not ready)
        self.details = details


class BadRequest(NbexecError):
    """The request is malformed or asks for something impossible."""


class Unauthorized(NbexecError):
    """No valid credentials came with the request."""


class Forbidden(NbexecError):
    """The caller is known but may not do this."""


class NotFound(NbexecError):
    """The execution, notebook, user or server does not exist."""


class Conflict(NbexecError):
    """The target exists but is in the wrong state (e.g. a server that is not ready)."""


class PayloadTooLarge(NbexecError):
    """The request body is over the configured limit."""


class TooManyRequests(NbexecError):
    """The caller holds as many streams (or requests) as it may at once."""


class UpstreamError(NbexecError):
    """A server we forward to could not be reached or answered nonsense."""

    def __init__(self, message: str, *, cause: str = "other", **details: Any) -> None:
        super().__init__(message, **details)
        #: what failed, for the service's metrics (never part of the answer): "hub_api",
        #: "server_start", "server_unreachable", "server_answer" or "other"
        self.cause = cause


class UpstreamTimeout(NbexecError):
    """Waiting for a server to become ready ran out of time."""
