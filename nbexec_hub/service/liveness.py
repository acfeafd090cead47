"""Is a user's server still there? Asked when a relayed stream goes quiet or breaks.

The proxy may keep a dead server's connection open, and the hub notices a dead server
only at its next poll, so the answer combines both: the hub's model (stopped, or started
again since) and a probe of the server itself through the proxy, made with the server's
own per-server token. Many quiet streams of one server share one check.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from tornado.httpclient import AsyncHTTPClient, HTTPRequest

from .. import errors
from .hubclient import HubClient
from .paths import server_url
from .streaming import fetch_quietly
from .tokens import ServerTokens

#: upstream statuses meaning "no server behind this URL any more"
GONE_STATUSES = (424, 503)


def means_gone(code: int, location: str) -> bool:
    """Whether an upstream answer says the server is gone: the proxy's or hub's 424/503,
    or a redirect into the hub (the proxy has no route for the server any more)."""
    return code in GONE_STATUSES or (300 <= code < 400 and "/hub/" in location)


class Liveness:
    """Shared liveness checks of users' servers."""

    def __init__(
        self,
        hub: HubClient,
        client: AsyncHTTPClient,
        proxy_url: str,
        tokens: ServerTokens,
        *,
        interval: float = 5.0,
    ) -> None:
        self.hub = hub
        self.client = client
        self.proxy_url = proxy_url
        self.tokens = tokens
        #: how long a stream may be quiet before its server is checked
        self.interval = interval
        self._checks: dict[tuple[str, str, Any], tuple[float, asyncio.Future]] = {}

    async def alive(self, status: dict[str, Any], *, fresh: bool = False) -> bool | None:
        """Is the server behind `status` still there? None when nobody can tell right now.

        Checks of one server are shared for half the interval unless `fresh` is asked for.
        """
        key = (status["user"], status["server_name"], status["started"])
        now = time.monotonic()
        if len(self._checks) > 1000:
            self._checks = {k: v for k, v in self._checks.items() if now - v[0] < 60}
        entry = self._checks.get(key)
        if fresh or entry is None or now - entry[0] >= self.interval / 2:
            entry = (now, asyncio.ensure_future(self._check(status)))
            self._checks[key] = entry
        return await asyncio.shield(entry[1])

    async def _check(self, status: dict[str, Any]) -> bool | None:
        """A proxy that does not answer (being restarted) says nothing about the server."""
        user, server_name = status["user"], status["server_name"]
        try:
            current = await self.hub.server_status(user, server_name)
        except errors.NbexecError:
            current = None  # the hub is unreachable (restarting?)
        if current is not None and (
            not current["ready"] or current["started"] != status["started"]
        ):
            return False
        try:
            token = await self.tokens.get(user, server_name)
        except errors.NbexecError:
            return None
        probe = HTTPRequest(
            server_url(self.proxy_url, status["url"], "api"),
            headers={"Authorization": f"token {token}"},
            follow_redirects=False,
            request_timeout=5,
            connect_timeout=5,
        )
        resp = await fetch_quietly(self.client, probe)
        location = resp.headers.get("Location", "") if resp.headers else ""
        if means_gone(resp.code, location):
            return False
        if resp.code == 200:
            return True
        return None
