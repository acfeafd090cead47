"""The service's one connection to the JupyterHub REST API.

`HubClient` talks to the hub with the service's own token: user and server
models, starting servers, the spawn-progress stream. Readiness answers are
cached for a few seconds so that a busy API client does not cost one hub
API call per request; `forget()` drops an entry as soon as an upstream says
the server is gone.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote, urlencode

from jupyterhub.services.auth import HubAuth
from tornado.httpclient import AsyncHTTPClient, HTTPRequest, HTTPResponse

from .. import errors
from ..protocol import EVENT_STREAM, LineSplitter, SSEDecoder, server_path
from . import metrics
from .streaming import StreamingHTTPClient, close_upstream, fetch_quietly

log = logging.getLogger("nbexec.hub")

#: asks the hub's user listing for pages with a ``_pagination`` envelope
PAGINATION_ACCEPT = "application/jupyterhub-pagination+json"
#: one event of the hub's spawn progress stream
ProgressCallback = Callable[[dict[str, Any]], Awaitable[None]]


def status_model(
    user: str, server_name: str, server: dict[str, Any] | None, service_prefix: str
) -> dict[str, Any]:
    """The service's status answer (CONTRACT B.3) from the hub's server model, or None if absent."""
    server = server or {}
    if server.get("ready"):
        state = "ready"
    elif server:
        state = "pending"
    else:
        state = "stopped"
    return {
        "user": user,
        "server_name": server_name,
        "state": state,
        "ready": state == "ready",
        "pending": server.get("pending"),
        "url": server.get("url"),
        "started": server.get("started"),
        "last_activity": server.get("last_activity"),
        "progress_url": f"{service_prefix}api/{server_path(user, server_name)}/progress",
    }


class HubClient:
    """Talks to the hub API with the service's token; caches readiness briefly.

    The token and the API's URL are the service's `HubOAuth`'s (`auth`): the one object
    that holds the service's own credential, used toward the hub and nowhere else.
    """

    def __init__(
        self,
        auth: HubAuth,
        service_prefix: str,
        *,
        cache_seconds: float = 3.0,
        request_timeout: float = 20.0,
        http_client: AsyncHTTPClient | None = None,
        stream_client: StreamingHTTPClient | None = None,
    ) -> None:
        self.auth = auth
        self.api_url = auth.api_url.rstrip("/") + "/"
        self.service_prefix = service_prefix
        self.cache_seconds = cache_seconds
        self.request_timeout = request_timeout
        self.http = http_client or AsyncHTTPClient()
        self.stream_client = stream_client or StreamingHTTPClient.create(max_clients=1000)
        self._ready_cache: dict[tuple[str, str], tuple[float, dict[str, Any]]] = {}

    # -- plumbing ---------------------------------------------------------

    def _headers(self, accept: str = "application/json") -> dict[str, str]:
        return {"Authorization": f"token {self.auth.api_token}", "Accept": accept}

    async def _request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        ok: tuple[int, ...] = (),
        accept: str = "application/json",
    ) -> tuple[int, Any]:
        """One hub API call; returns (status, decoded JSON or None). Network failures raise."""
        req = HTTPRequest(
            self.api_url + path,
            method=method,
            headers=self._headers(accept),
            body=json.dumps(body) if body is not None else (b"" if method == "POST" else None),
            request_timeout=self.request_timeout,
            connect_timeout=10,
        )
        started = time.monotonic()
        resp: HTTPResponse = await fetch_quietly(self.http, req)
        metrics.observe_hub_call(method, resp.code, started)
        if resp.code == 599:
            raise errors.UpstreamError(
                f"The hub API is unreachable: {resp.error}", cause="hub_api"
            )
        data = None
        if resp.body:
            try:
                data = json.loads(resp.body)
            except ValueError:
                data = None
        if resp.code >= 400 and resp.code not in ok:
            message = data.get("message") if isinstance(data, dict) else resp.reason
            if resp.code == 404:
                raise errors.NotFound(message or "Not found")
            if resp.code == 403:
                raise errors.UpstreamError(
                    f"The service's hub token may not do this ({message}); check its role",
                    cause="hub_api",
                )
            raise errors.UpstreamError(
                f"The hub answered {resp.code}: {message}", cause="hub_api"
            )
        return resp.code, data

    # -- models -----------------------------------------------------------

    async def health(self) -> bool:
        """Whether the hub API answers at all."""
        req = HTTPRequest(self.api_url, request_timeout=5, connect_timeout=5)
        resp = await fetch_quietly(self.http, req)
        return resp.code == 200

    async def get_user(self, user: str) -> dict[str, Any]:
        """The hub's user model (with its ``servers`` dict); NotFound for an unknown user."""
        _, data = await self._request("GET", f"users/{quote(user, safe='')}")
        return data

    async def server_status(
        self, user: str, server_name: str = "", *, use_cache: bool = True
    ) -> dict[str, Any]:
        """Status of one server (B.3); a ready answer is cached for `cache_seconds`."""
        key = (user, server_name)
        if use_cache and key in self._ready_cache:
            stamp, status = self._ready_cache[key]
            if time.monotonic() - stamp < self.cache_seconds:
                return status
            self._ready_cache.pop(key, None)
        model = await self.get_user(user)
        server = (model.get("servers") or {}).get(server_name)
        status = status_model(user, server_name, server, self.service_prefix)
        if status["ready"]:
            self._ready_cache[key] = (time.monotonic(), status)
        else:
            self._ready_cache.pop(key, None)
        return status

    def forget(self, user: str, server_name: str = "") -> None:
        """Drop the cached readiness of a server that turned out to be gone."""
        self._ready_cache.pop((user, server_name), None)

    async def _paginated_users(self, query: dict[str, Any]) -> list[dict[str, Any]]:
        """Every user model a listing answers, following the hub's ``_pagination.next``
        (the hub caps each page at its ``api_page_max_limit``, whatever we ask for)."""
        found: list[dict[str, Any]] = []
        offset = 0
        while True:
            page_query = urlencode({**query, "offset": offset, "limit": 200})
            _, data = await self._request(
                "GET", f"users?{page_query}", accept=PAGINATION_ACCEPT
            )
            if isinstance(data, list):  # a hub without pagination (before 2.0)
                return found + data
            found.extend((data or {}).get("items") or [])
            following = ((data or {}).get("_pagination") or {}).get("next")
            if not following:
                return found
            offset = int(following["offset"])

    async def list_ready_servers(self) -> list[dict[str, Any]]:
        """Status models of every ready server on the hub (users with active servers only)."""
        found: list[dict[str, Any]] = []
        for model in await self._paginated_users({"state": "ready"}):
            found.extend(self.ready_servers_of(model))
        return found

    def ready_servers_of(self, model: dict[str, Any]) -> list[dict[str, Any]]:
        """Status models of the ready servers in one hub user model."""
        found = []
        for name, server in (model.get("servers") or {}).items():
            status = status_model(model["name"], name, server, self.service_prefix)
            if status["ready"]:
                found.append(status)
        return found

    async def list_user_names(self) -> list[str]:
        """Names of every user on the hub (paginated listing)."""
        return [model["name"] for model in await self._paginated_users({})]

    # -- tokens -----------------------------------------------------------

    async def mint_token(
        self, user: str, scopes: list[str], *, expires_in: int, note: str
    ) -> tuple[str, str | None, int]:
        """A new token of `user` with exactly `scopes`: (token, its id, lifetime in seconds).

        Needs the ``tokens`` scope. A hub whose ``token_expires_in_max_seconds`` is lower
        than `expires_in` gets asked again with its maximum.
        """
        body = {"scopes": scopes, "expires_in": expires_in, "note": note}
        path = f"users/{quote(user, safe='')}/tokens"
        code, data = await self._request("POST", path, body, ok=(400,))
        if code == 400:
            message = str((data or {}).get("message", "")) if isinstance(data, dict) else ""
            most = re.search(r"must not exceed (\d+)", message)
            if not most:
                raise errors.UpstreamError(
                    f"The hub refused a token for {user}: {message}", cause="hub_api"
                )
            body["expires_in"] = expires_in = int(most.group(1))
            code, data = await self._request("POST", path, body)
        if not isinstance(data, dict) or not data.get("token"):
            raise errors.UpstreamError(
                f"The hub did not issue a token for {user}", cause="hub_api"
            )
        return data["token"], data.get("id"), expires_in

    async def revoke_token(self, user: str, token_id: str) -> None:
        """Delete a token of `user` the service minted (gone already is fine)."""
        path = f"users/{quote(user, safe='')}/tokens/{quote(token_id, safe='')}"
        await self._request("DELETE", path, ok=(404,))

    # -- actions ----------------------------------------------------------

    async def start_server(self, user: str, server_name: str = "") -> None:
        """Ask the hub to start a server; starting one that already runs is fine."""
        self.forget(user, server_name)
        code, data = await self._request(
            "POST", server_path(user, server_name), ok=(400, 500, 502, 503)
        )
        message = (data or {}).get("message", "") if isinstance(data, dict) else ""
        if code == 400:
            if "already" in message.lower() or "pending" in message.lower():
                return
            raise errors.BadRequest(f"The hub refused to start the server: {message}")
        if code >= 500:
            raise errors.UpstreamError(
                f"The server {user}/{server_name} failed to start: {message or code}",
                state="stopped",
                cause="server_start",
            )
        log.info("Asked the hub to start %s/%s", user, server_name)

    async def wait_ready(
        self,
        user: str,
        server_name: str,
        timeout: float,
        *,
        poll: float = 0.5,
        just_started: bool = False,
    ) -> dict[str, Any]:
        """Poll until the server is ready: UpstreamTimeout when time runs out, UpstreamError
        when a spawn in progress (or `just_started`) ends without a server."""
        deadline = time.monotonic() + timeout
        seen_pending = just_started
        while True:
            status = await self.server_status(user, server_name, use_cache=False)
            if status["ready"]:
                return status
            if status["state"] == "pending":
                seen_pending = True
            elif seen_pending:
                raise errors.UpstreamError(
                    f"The server {user}/{server_name} failed to start",
                    state="stopped",
                    cause="server_start",
                )
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise errors.UpstreamTimeout(
                    f"The server {user}/{server_name} was not ready after {timeout:g} s",
                    state=status["state"],
                )
            await asyncio.sleep(min(poll, remaining))
            poll = min(poll * 1.5, 2.0)

    async def spawn_progress(
        self, user: str, server_name: str, on_event: ProgressCallback, stop: asyncio.Event
    ) -> None:
        """Relay the hub's spawn-progress events to `on_event` until the hub ends the stream
        or `stop` is set (then the upstream connection is closed)."""
        lines = LineSplitter(max_line=1024 * 1024)
        decoder = SSEDecoder()
        pending: list[dict[str, Any]] = []
        wake = asyncio.Event()

        def on_chunk(chunk: bytes) -> None:
            if stop.is_set():  # the caller went away (raising here would log an error)
                close_upstream(req)
                return
            for line in lines.feed(chunk):
                try:
                    event = decoder.line(line.decode("utf8", "replace"))
                except ValueError:
                    continue
                if event is not None:
                    pending.append(event)
            wake.set()

        req = HTTPRequest(
            self.api_url + server_path(user, server_name) + "/progress",
            headers={**self._headers(), "Accept": EVENT_STREAM},
            streaming_callback=on_chunk,
            request_timeout=0,
            connect_timeout=10,
        )
        fetch = asyncio.ensure_future(fetch_quietly(self.stream_client, req))
        stopped = asyncio.ensure_future(stop.wait())
        try:
            while True:
                woken = asyncio.ensure_future(wake.wait())
                await asyncio.wait({fetch, woken, stopped}, return_when=asyncio.FIRST_COMPLETED)
                woken.cancel()
                wake.clear()
                if stop.is_set():
                    return
                while pending:
                    await on_event(pending.pop(0))
                if fetch.done():
                    resp = fetch.result()
                    if 400 <= resp.code < 599:
                        raise errors.Conflict(
                            f"The server {user}/{server_name} is not starting", state="stopped"
                        )
                    return
        finally:
            stopped.cancel()
            if not fetch.done():
                close_upstream(req)
