"""The service's HTTP handlers: identity, authorization, then one call each.

Every handler resolves the caller asynchronously in `prepare()` (the hub's
blocking `get_current_user` path is never used) and checks permissions the
way the hub does: a user acts on their own servers, anyone else needs scopes
covering ``access:servers!server=U/S`` (and ``start:servers`` to start one).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any
from urllib.parse import quote

# the hub's own rule for which cookie requests need XSRF (private, but the one HubOAuth
# applies itself): used only to tell "XSRF missing" (403) from "not logged in" (401)
from jupyterhub._xsrf_utils import _needs_check_xsrf
from jupyterhub.services.auth import HubOAuth, HubOAuthCallbackHandler, HubOAuthenticated
from tornado import web
from tornado.iostream import StreamClosedError

from .. import __version__, errors, sse
from ..http_errors import JSONErrorMixin
from .fanout import gather_executions
from .forward import Forwarder, parse_start_wait
from .hubclient import HubClient


class SettingsHubAuthMixin:
    """`hub_auth` is the service's one `HubOAuth`, from the application's settings.

    It holds the login states (PKCE verifiers) and the token cache; the stock handlers
    would each build a separate `HubOAuth.instance()`.
    """

    settings: dict[str, Any]

    @property
    def hub_auth(self) -> HubOAuth:
        return self.settings["hub_auth"]

    @hub_auth.setter
    def hub_auth(self, value: HubOAuth) -> None:  # pragma: no cover - settings hold it
        pass


class ServiceHandler(SettingsHubAuthMixin, JSONErrorMixin, HubOAuthenticated, web.RequestHandler):
    """Base class: the caller's hub identity (API paths answer 401 JSON without one)."""

    #: False for handlers anyone may call (health probes)
    requires_login = True
    caller: dict[str, Any] | None = None

    @property
    def hub(self) -> HubClient:
        return self.settings["hub_client"]

    @property
    def forwarder(self) -> Forwarder:
        return self.settings["forwarder"]

    @property
    def log(self) -> Any:
        return self.settings["log"]

    def get_current_user(self) -> dict[str, Any] | None:
        """The caller resolved in `prepare()` (never the hub's blocking lookup)."""
        return self.caller

    def is_api_request(self) -> bool:
        return self.request.path.startswith(self.settings["service_prefix"] + "api/")

    async def prepare(self) -> None:
        if not self.requires_login:
            return
        self.caller = await self.hub_auth.get_user(self, sync=False)
        if self.caller is None:
            cookie = self.get_secure_cookie(self.hub_auth.cookie_name)
            if cookie and _needs_check_xsrf(self):
                raise errors.Forbidden(
                    "Cookie-authenticated requests need the XSRF token "
                    "(X-XSRFToken header or ?_xsrf=)"
                )
            if self.is_api_request() or self.request.method != "GET":
                raise errors.Unauthorized(
                    "Log in, or send a hub API token (Authorization: token ...)"
                )
            self.redirect(self.get_login_url())
            return
        access = self.hub_auth.access_scopes
        if access and not self.hub_auth.check_scopes(access, self.caller):
            raise errors.Forbidden(
                f"{self.caller.get('kind', 'user')} {self.caller['name']} lacks "
                f"{' or '.join(sorted(access))}"
            )

    # -- authorization, mirroring the hub's scopes -------------------------

    def _owns_or_has(self, scope: str, user: str, server_name: str) -> bool:
        """Whether the caller is the user, or holds ``scope`` on the server U/S."""
        caller = self.caller or {}
        if caller.get("kind", "user") == "user" and caller.get("name") == user:
            return True
        return bool(
            self.hub_auth.check_scopes(f"{scope}!server={user}/{server_name}", self.caller)
        )

    def may_access(self, user: str, server_name: str) -> bool:
        """Whether the caller may use the server U/S (its owner, or access:servers)."""
        return self._owns_or_has("access:servers", user, server_name)

    def may_start(self, user: str, server_name: str) -> bool:
        """Whether the caller may start the server U/S (its owner, or start:servers)."""
        return self._owns_or_has("start:servers", user, server_name)

    def check_access(self, user: str, server_name: str) -> None:
        if not self.may_access(user, server_name):
            raise errors.Forbidden(f"You may not use the server {user}/{server_name}")

    def write_json(self, model: Any, status: int = 200) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json; charset=UTF-8")
        self.finish(json.dumps(model))


class OAuthCallbackHandler(SettingsHubAuthMixin, HubOAuthCallbackHandler):
    """`GET /oauth_callback`: the hub's OAuth callback, with the service's `HubOAuth`.

    That object holds the login states (PKCE verifiers) stored when a page redirected to
    login; the stock handler would look them up in a separate `HubOAuth.instance()`.
    """

    async def prepare(self) -> None:
        # resolved here so that the callback's `current_user` never blocks the event loop
        self._hub_auth_user_cache = await self.hub_auth.get_user(self, sync=False)


class HealthHandler(ServiceHandler):
    """`GET /api/health`: is the service up, can it reach the hub (no auth, for probes)."""

    requires_login = False

    async def get(self) -> None:
        hub_ok = await self.hub.health()
        self.write_json({"version": __version__, "hub": "ok" if hub_ok else "unreachable"})


class ServerHandler(ServiceHandler):
    """`GET` a server's status (B.3); `POST` starts it (202 with the status)."""

    async def get(self, user: str, server_name: str | None = None) -> None:
        server_name = server_name or ""
        self.check_access(user, server_name)
        self.write_json(await self.hub.server_status(user, server_name, use_cache=False))

    async def post(self, user: str, server_name: str | None = None) -> None:
        server_name = server_name or ""
        if not self.may_start(user, server_name):
            raise errors.Forbidden(f"You may not start the server {user}/{server_name}")
        await self.hub.start_server(user, server_name)
        self.write_json(await self.hub.server_status(user, server_name, use_cache=False), 202)


class SpawnProgressHandler(ServiceHandler):
    """`GET …/server/progress`: the hub's spawn progress, relayed as Server-Sent Events."""

    stop: asyncio.Event | None = None

    async def get(self, user: str, server_name: str | None = None) -> None:
        server_name = server_name or ""
        self.check_access(user, server_name)
        status = await self.hub.server_status(user, server_name, use_cache=False)
        if status["state"] == "stopped":
            raise errors.Conflict(
                f"The server {user}/{server_name} is not running", state="stopped"
            )
        for name, value in sse.SSE_HEADERS.items():
            self.set_header(name, value)
        await self.flush()
        self.stop = asyncio.Event()
        keepalive = asyncio.ensure_future(self._keepalive())

        async def on_event(event: dict[str, Any]) -> None:
            await self._send(sse.format_event(event))

        try:
            await self.hub.spawn_progress(user, server_name, on_event, self.stop)
        finally:
            keepalive.cancel()
        if not self.stop.is_set():
            self.finish()

    async def _keepalive(self) -> None:
        while True:
            await asyncio.sleep(self.forwarder.keepalive_seconds)
            await self._send(sse.keepalive_comment())

    async def _send(self, text: str) -> None:
        if self.stop is None or self.stop.is_set():
            return
        try:
            self.write(text)
            await self.flush()
        except StreamClosedError:
            self.stop.set()

    def on_connection_close(self) -> None:
        if self.stop is not None:
            self.stop.set()


@web.stream_request_body
class ForwardHandler(ServiceHandler):
    """Every request of the Execution API, forwarded to the user's server (B.4).

    The body is read as a stream: one over ``max_body_size`` is read to its end and
    dropped, then answered 413 JSON (tornado itself would just drop the connection). An
    authentication error is answered only once the body is read, too: answering earlier
    leaves the body unread on a connection the proxy may reuse.
    """

    upstream_relay: Any = None
    #: what may be forwarded beyond executions: read-only, for the page
    READ_ONLY = ("contents", "kernelspecs")
    _body: bytearray
    _body_too_large = False
    _deferred_error: Exception | None = None

    @property
    def max_body_size(self) -> int:
        return self.settings.get("max_body_size", 100 * 1024 * 1024)

    async def prepare(self) -> None:
        self._body = bytearray()
        self.request.connection.set_max_body_size(1 << 50)  # type: ignore[union-attr]
        length = self.request.headers.get("Content-Length", "0")
        self._body_too_large = length.isdigit() and int(length) > self.max_body_size
        try:
            await super().prepare()
        except (errors.NbexecError, web.HTTPError) as e:
            self._deferred_error = e

    def data_received(self, chunk: bytes) -> None:
        if self._body_too_large:
            return
        self._body.extend(chunk)
        if len(self._body) > self.max_body_size:
            self._body_too_large = True
            self._body = bytearray()

    async def _forward(self, user: str, server_name: str | None, rest: str) -> None:
        if self._deferred_error is not None:
            raise self._deferred_error
        if self._body_too_large:
            raise errors.PayloadTooLarge(f"The request body is over {self.max_body_size} bytes")
        self.request.body = bytes(self._body)
        server_name = server_name or ""
        if rest.split("/", 1)[0] in self.READ_ONLY and self.request.method != "GET":
            raise web.HTTPError(405)
        self.check_access(user, server_name)
        start, wait = parse_start_wait(
            self.get_query_argument("start", None),
            self.get_query_argument("wait", None),
            self.settings["default_wait"],
            self.settings["max_wait"],
        )
        self.log.info(
            "Forwarding %s %s for %s to %s/%s",
            self.request.method, rest, self.caller["name"], user, server_name,  # type: ignore[index]
        )
        await self.forwarder.forward(
            self, user, server_name, "api/" + quote(rest, safe="/"),
            start=start, wait=wait, may_start=self.may_start(user, server_name),
        )

    get = post = put = patch = delete = _forward  # type: ignore[assignment]

    def on_connection_close(self) -> None:
        if self.upstream_relay is not None:
            self.upstream_relay.caller_left()


class FanoutHandler(ServiceHandler):
    """`GET /api/executions`: executions of every ready server the caller may access."""

    async def get(self) -> None:
        result = await gather_executions(
            self.hub,
            self.settings["hub_http_client"],
            self.forwarder.proxy_url,
            self.settings["service_token"],
            self.may_access,
            concurrency=self.settings["fanout_concurrency"],
            timeout=self.settings["fanout_timeout"],
        )
        self.write_json(result)


class NotFoundHandler(ServiceHandler):
    """Anything else below ``api/``: 404 JSON (after authentication, like every API path)."""

    def _not_found(self, *args: Any, **kwargs: Any) -> None:
        raise errors.NotFound(f"No such API route: {self.request.path}")

    # (other methods get tornado's 405, in JSON too)
    get = post = delete = _not_found  # type: ignore[assignment]


_USER = r"(?P<user>[^/]+)"
_SERVER = r"(?:server|servers/(?P<server_name>[^/]+))"

#: (pattern relative to the service prefix, handler)
default_handlers: list[tuple[str, type]] = [
    (r"api/health", HealthHandler),
    (r"api/executions/?", FanoutHandler),
    (rf"api/users/{_USER}/{_SERVER}/progress", SpawnProgressHandler),
    (rf"api/users/{_USER}/{_SERVER}/?", ServerHandler),
    (
        rf"api/users/{_USER}(?:/servers/(?P<server_name>[^/]+))?"
        r"/(?P<rest>(?:executions|contents|kernelspecs)(?:/.*)?)",
        ForwardHandler,
    ),
]
#: the last route of the application, after the page's
fallback_handlers: list[tuple[str, type]] = [(r"api/.*", NotFoundHandler)]
