"""Forwarding execution requests to a user's server.

`Forwarder` makes sure the target server is ready (starting it or waiting for it when
the caller asked with ``?start=1`` / ``?wait=N``; a GET never starts one), then hands the
request to a `Relay` with the server's per-server token (never the service's own), and
tries once more when the server turns out to be gone behind a cached readiness answer or
refuses a token that just expired.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

from tornado import web
from tornado.httpclient import AsyncHTTPClient

from .. import errors
from ..protocol import parse_bool
from .bounds import ByteBudgets, RelayLimits
from .hubclient import HubClient
from .liveness import Liveness
from .paths import server_url
from .relay import Relay, ServerGone, TokenRefused
from .tokens import ServerTokens

log = logging.getLogger("nbexec.forward")

#: query parameters that belong to the service and never travel upstream
SERVICE_QUERY_PARAMS = frozenset({"start", "wait", "_xsrf", "token", "last_event_id"})

def parse_start_wait(
    start_arg: str | None, wait_arg: str | None, default_wait: float, max_wait: float
) -> tuple[bool, float | None]:
    """The ``?start=`` and ``?wait=`` query values: (start?, seconds to wait or None)."""
    start = parse_bool(start_arg or "") is True
    wait: float | None = None
    if wait_arg not in (None, ""):
        try:
            wait = float(wait_arg)  # type: ignore[arg-type]
        except ValueError:
            raise errors.BadRequest(f"wait must be a number of seconds, not {wait_arg!r}") from None
        if wait < 0 or wait != wait:
            raise errors.BadRequest("wait must be a number of seconds, not negative")
    elif start:
        wait = default_wait
    if wait is not None:
        wait = min(wait, max_wait)
    return start, wait


def upstream_query(query: dict[str, list[bytes]]) -> str:
    """The caller's query string without the service's own parameters ("" or "?…")."""
    pairs = [
        (key, value.decode("utf8", "replace"))
        for key, values in query.items()
        if key not in SERVICE_QUERY_PARAMS
        for value in values
    ]
    return "?" + urlencode(pairs) if pairs else ""


class Forwarder:
    """Forwards requests to users' servers through the proxy, with per-server tokens."""

    def __init__(
        self,
        hub: HubClient,
        tokens: ServerTokens,
        liveness: Liveness,
        client: AsyncHTTPClient,
        proxy_url: str,
        limits: RelayLimits,
        budgets: ByteBudgets | None = None,
    ) -> None:
        self.hub = hub
        self.tokens = tokens
        self.liveness = liveness
        self.client = client
        self.proxy_url = proxy_url.rstrip("/")
        self.limits = limits
        self.budgets = budgets

    async def ensure_ready(
        self,
        user: str,
        server_name: str,
        *,
        start: bool,
        wait: float | None,
        may_start: bool,
    ) -> dict[str, Any]:
        """The ready server's status; start it or wait for it as asked, else Conflict (409).

        A stopped server that is not to be started is a 409 at once: nothing would start it.
        """
        status = await self.hub.server_status(user, server_name)
        if status["ready"]:
            return status
        just_started = False
        if status["state"] == "stopped":
            if not start:
                raise errors.Conflict(
                    f"The server {user}/{server_name} is not running; start it with "
                    "POST …/server, or ?start=1 on a POST",
                    state="stopped",
                )
            if not may_start:
                raise errors.Forbidden(f"You may not start the server {user}/{server_name}")
            await self.hub.start_server(user, server_name)
            just_started = True
        if wait is None:
            raise errors.Conflict(
                f"The server {user}/{server_name} is starting; add ?wait=<seconds> to wait",
                state="pending",
            )
        return await self.hub.wait_ready(user, server_name, wait, just_started=just_started)

    async def forward(
        self,
        handler: web.RequestHandler,
        user: str,
        server_name: str,
        api_path: str,
        *,
        exec_id: str | None = None,
        progress: bool = False,
        start: bool = False,
        wait: float | None = None,
        may_start: bool = False,
        on_relay: Callable[[Relay], None] | None = None,
        caller: str = "",
        caller_gone: Callable[[], bool] = lambda: False,
    ) -> None:
        """Forward the handler's request to ``<U/S's URL><api_path>`` once ready; relay it.

        A server gone behind a cached readiness answer is made ready again (when the caller
        asked to start or wait) and the request sent once more; a refused token is renewed
        once.
        """
        query = upstream_query(handler.request.query_arguments)
        token_renewed = False
        gone_once = False
        while True:
            status = await self.ensure_ready(
                user, server_name, start=start, wait=wait, may_start=may_start
            )
            token = await self.tokens.get(user, server_name)
            if caller_gone():  # it left while the server started, or a token was minted
                log.info("Caller left before %s/%s was asked; not forwarding", user, server_name)
                return
            relay = Relay(
                handler,
                status,
                server_url(self.proxy_url, status["url"], api_path) + query,
                token,
                client=self.client,
                liveness=self.liveness,
                limits=self.limits,
                exec_id=exec_id,
                progress=progress,
                caller=caller,
                budgets=self.budgets,
            )
            if on_relay is not None:
                on_relay(relay)
            try:
                await relay.run()
                return
            except TokenRefused:
                if token_renewed:
                    relay.pass_through()
                    return
                token_renewed = True
                if await self.tokens.renew(user, server_name, token) == token:
                    relay.pass_through()  # refused again too soon: no new token
                    return
            except ServerGone:
                self.hub.forget(user, server_name)
                if gone_once or (not start and wait is None):
                    fresh = await self.hub.server_status(user, server_name, use_cache=False)
                    state = "stopped" if fresh["ready"] else fresh["state"]
                    raise errors.Conflict(
                        f"The server {user}/{server_name} is not running ({state})",
                        state=state,
                    ) from None
                gone_once = True
                log.info("Server %s/%s was gone; making it ready again", user, server_name)
