"""Forwarding execution requests to a user's server, and relaying what comes back.

`Forwarder` makes sure the target server is ready (starting it or waiting for
it when the caller asked with ``?start=1`` / ``?wait=N``), sends the request
through the proxy with the service's token, and relays the answer: error
responses passed through (or mapped to 409 ``stopped`` when the server is
gone), successful ones chunk by chunk as they arrive, converted to
Server-Sent Events when the caller accepts ``text/event-stream``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any
from urllib.parse import urlencode

from tornado import web
from tornado.httpclient import HTTPRequest

from .. import errors, sse
from .hubclient import HubClient
from .relay import GONE_STATUSES, Relay, ServerGone
from .streaming import StreamingHTTPClient, fetch_quietly

log = logging.getLogger("nbexec.forward")

#: query parameters that belong to the service and never travel upstream
SERVICE_QUERY_PARAMS = frozenset({"start", "wait", "_xsrf", "token", "last_event_id"})

TRUE_WORDS = {"1", "true", "yes", "on"}


def parse_start_wait(
    start_arg: str | None, wait_arg: str | None, default_wait: float, max_wait: float
) -> tuple[bool, float | None]:
    """The ``?start=`` and ``?wait=`` query values: (start?, seconds to wait or None)."""
    start = (start_arg or "").strip().lower() in TRUE_WORDS
    wait: float | None = None
    if wait_arg not in (None, ""):
        try:
            wait = float(wait_arg)  # type: ignore[arg-type]
        except ValueError:
            raise errors.BadRequest(f"wait must be a number of seconds, not {wait_arg!r}") from None
        if wait < 0:
            raise errors.BadRequest("wait must not be negative")
    elif start:
        wait = default_wait
    if wait is not None:
        wait = min(wait, max_wait)
    return start, wait


class Forwarder:
    """Forwards requests to users' servers through the proxy with the service token."""

    def __init__(
        self,
        hub: HubClient,
        proxy_url: str,
        api_token: str,
        stream_client: StreamingHTTPClient,
        *,
        keepalive_seconds: float = sse.KEEPALIVE_SECONDS,
        liveness_seconds: float = 5.0,
        request_timeout: float = 60.0,
    ) -> None:
        self.hub = hub
        self.proxy_url = proxy_url.rstrip("/")
        self._token = api_token
        self.client = stream_client
        self.keepalive_seconds = keepalive_seconds
        self.liveness_seconds = liveness_seconds
        #: shared liveness checks: (user, server, started) -> (when, result)
        self._alive_checks: dict[tuple[str, str, Any], tuple[float, asyncio.Future]] = {}
        self.request_timeout = request_timeout

    async def ensure_ready(
        self,
        user: str,
        server_name: str,
        *,
        start: bool,
        wait: float | None,
        may_start: bool,
    ) -> dict[str, Any]:
        """The ready server's status; start it or wait for it as asked, else Conflict (409)."""
        status = await self.hub.server_status(user, server_name)
        if status["ready"]:
            return status
        just_started = False
        if status["state"] == "stopped" and start:
            if not may_start:
                raise errors.Forbidden(f"You may not start the server {user}/{server_name}")
            await self.hub.start_server(user, server_name)
            just_started = True
        elif wait is None:
            raise errors.Conflict(
                f"The server {user}/{server_name} is not ready ({status['state']})",
                state=status["state"],
            )
        if wait is None:
            raise errors.Conflict(
                f"The server {user}/{server_name} is starting; add ?wait=<seconds> to wait",
                state="pending",
            )
        return await self.hub.wait_ready(user, server_name, wait, just_started=just_started)

    def auth_headers(self) -> dict[str, str]:
        """The header carrying the service's token upstream (the only place it is used)."""
        return {"Authorization": f"token {self._token}"}

    def target_url(self, server_url: str, rest: str, query: dict[str, list[bytes]]) -> str:
        """Proxy URL + the server's URL path + `rest`, with the service's own params removed."""
        pairs = [
            (key, value.decode("utf8", "replace"))
            for key, values in query.items()
            if key not in SERVICE_QUERY_PARAMS
            for value in values
        ]
        url = self.proxy_url + server_url.rstrip("/") + "/" + rest.lstrip("/")
        return url + ("?" + urlencode(pairs) if pairs else "")

    async def forward(
        self,
        handler: web.RequestHandler,
        user: str,
        server_name: str,
        rest: str,
        *,
        start: bool = False,
        wait: float | None = None,
        may_start: bool = False,
    ) -> None:
        """Forward the handler's request to U/S once it is ready, and relay the answer.

        When the server turns out to be gone behind a cached readiness answer and the
        caller asked to start or wait, it is made ready again and the request sent once more.
        """
        for attempt in (1, 2):
            status = await self.ensure_ready(
                user, server_name, start=start, wait=wait, may_start=may_start
            )
            relay = Relay(self, handler, status, rest)
            handler.upstream_relay = relay  # type: ignore[attr-defined]
            try:
                await relay.run()
                return
            except ServerGone:
                self.hub.forget(user, server_name)
                if attempt == 2 or (not start and wait is None):
                    fresh = await self.hub.server_status(user, server_name, use_cache=False)
                    state = "stopped" if fresh["ready"] else fresh["state"]
                    raise errors.Conflict(
                        f"The server {user}/{server_name} is not running ({state})",
                        state=state,
                    ) from None
                log.info("Server %s/%s was gone; making it ready again", user, server_name)

    def server_url(self, status: dict[str, Any], path: str) -> str:
        """The proxy's URL for a path below a server's URL."""
        return self.proxy_url + status["url"].rstrip("/") + "/" + path.lstrip("/")

    async def server_alive(self, status: dict[str, Any], *, fresh: bool = False) -> bool | None:
        """Is the server behind `status` still there? None when nobody can tell right now.

        Asked when a stream goes quiet or breaks. Many quiet streams of one server share
        one check (for half the liveness interval) unless `fresh` is asked for.
        """
        key = (status["user"], status["server_name"], status["started"])
        now = time.monotonic()
        if len(self._alive_checks) > 1000:
            self._alive_checks = {
                k: v for k, v in self._alive_checks.items() if now - v[0] < 60
            }
        entry = self._alive_checks.get(key)
        if fresh or entry is None or now - entry[0] >= self.liveness_seconds / 2:
            entry = (now, asyncio.ensure_future(self._check_alive(status)))
            self._alive_checks[key] = entry
        return await asyncio.shield(entry[1])

    async def _check_alive(self, status: dict[str, Any]) -> bool | None:
        """The hub may not have noticed a dead server yet, so the server itself is probed
        through the proxy as well. A proxy that does not answer (being restarted) says
        nothing about the server."""
        user, server_name = status["user"], status["server_name"]
        try:
            current = await self.hub.server_status(user, server_name)
        except errors.NbexecError:
            current = None  # the hub is unreachable (restarting?)
        if current is not None and (
            not current["ready"] or current["started"] != status["started"]
        ):
            return False
        probe = HTTPRequest(
            self.server_url(status, "api"),
            headers=self.auth_headers(),
            follow_redirects=False,
            request_timeout=5,
            connect_timeout=5,
        )
        resp = await fetch_quietly(self.client, probe)
        location = resp.headers.get("Location", "") if resp.headers else ""
        if resp.code in GONE_STATUSES or (300 <= resp.code < 400 and "/hub/" in location):
            return False
        if resp.code == 200:
            return True
        return None
