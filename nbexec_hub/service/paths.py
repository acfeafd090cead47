"""The path rules of forwarding (CONTRACT B.4): what may follow ``api/users/U[/servers/S]/``.

A forwarded path goes to ``<server url>api/<resource>/…`` through the proxy, which resolves
``..`` and decodes nothing itself. Tornado hands handlers *decoded* path captures, so an
encoded ``%2f`` or ``%2e%2e`` would turn into real separators on the way out and lead the
request anywhere behind the proxy. The raw path is therefore checked here, segment by
segment, after decoding each segment once, and every segment is re-quoted on its own:
the upstream path can never leave the resource's folder.
"""

from __future__ import annotations

import re
from urllib.parse import quote, unquote

from .. import errors

#: what may be forwarded: the Execution API, and read-only helpers for the page
RESOURCES = ("executions", "contents", "kernelspecs")
READ_ONLY_RESOURCES = ("contents", "kernelspecs")
_FORBIDDEN_CHARS = ("/", "\\", "\0")
#: a percent-escape left after one decoding: a double-encoded segment
_STILL_ENCODED = re.compile(r"%[0-9A-Fa-f]{2}")
#: the raw route: user, optional server name, and the rest (as sent, not decoded)
_RAW_ROUTE = re.compile(r"api/users/(?P<user>[^/]+)(?:/servers/(?P<server>[^/]+))?/(?P<rest>.*)$")


def check_name(kind: str, value: str) -> str:
    """A user or server name from the URL: never empty-looking or holding a separator."""
    if value in (".", "..") or any(c in value for c in _FORBIDDEN_CHARS) or "\n" in value:
        raise errors.BadRequest(f"Not a valid {kind} name: {value!r}")
    return value


def decode_segment(raw: str) -> str:
    """One path segment decoded once; 400 for anything that could change the path's shape."""
    try:
        segment = unquote(raw, errors="strict")
    except UnicodeDecodeError:
        raise errors.BadRequest("A path segment is not valid UTF-8") from None
    if segment in ("", ".", ".."):
        raise errors.BadRequest(f"Empty, '.' or '..' path segments are not allowed: {raw!r}")
    if any(c in segment for c in _FORBIDDEN_CHARS):
        raise errors.BadRequest(f"A path segment may not hold '/', '\\' or NUL: {raw!r}")
    if _STILL_ENCODED.search(segment):
        raise errors.BadRequest(f"Double-encoded path segments are not allowed: {raw!r}")
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in segment):
        raise errors.BadRequest(f"A path segment may not hold control characters: {raw!r}")
    return segment


def raw_rest(request_path: str, service_prefix: str) -> str:
    """The undecoded part of the request path after ``api/users/U[/servers/S]/``."""
    tail = request_path[len(service_prefix):] if request_path.startswith(service_prefix) else ""
    match = _RAW_ROUTE.match(tail)
    if match is None:
        raise errors.NotFound(f"No such API route: {request_path}")
    return match.group("rest")


def upstream_api_path(rest: str) -> tuple[str, str]:
    """(resource, ``api/<resource>/<re-quoted segments>``) for a raw forwarded path.

    One trailing slash is allowed (and kept); any other empty segment is a 400.
    """
    head, _, tail = rest.partition("/")
    if head not in RESOURCES:
        raise errors.NotFound(f"No such API route: {head!r}")
    parts = tail.split("/") if tail else []
    trailing = bool(parts) and parts[-1] == ""
    if trailing:
        parts.pop()
    segments = [quote(decode_segment(part), safe="") for part in parts]
    path = "/".join(["api", head, *segments])
    return head, path + ("/" if trailing else "")


def server_url(proxy_url: str, server_path: str, path: str) -> str:
    """The proxy's URL of `path` below a server's URL path (``/user/U/`` from the hub)."""
    return proxy_url.rstrip("/") + "/" + server_path.strip("/") + "/" + path.lstrip("/")
