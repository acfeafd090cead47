"""The service's browser page (filled in by the page work): its routes."""

from __future__ import annotations

#: (pattern, handler class) pairs relative to the service prefix, added by the service app
handlers: list[tuple[str, type]] = []
