"""The base of the service's handlers: the caller's identity, scopes and common headers.

Every handler resolves the caller asynchronously in `prepare()` (the hub's blocking
`get_current_user` path is never used) and checks permissions only by the scopes of the
credential the caller presented, as the hub does: ``access:servers!server=U/S`` to use a
server, ``start:servers`` (or ``servers``) covering it to start one. A user's own servers
get no shortcut: a token made with fewer scopes covers less, its owner's servers included.
"""

from __future__ import annotations

import json
from typing import Any

from jupyterhub.services.auth import HubOAuth, HubOAuthCallbackHandler, HubOAuthenticated
from tornado import web

from .. import errors
from ..http_errors import JSONErrorMixin
from ..private_apis import needs_xsrf_check, set_oauth_callback_user
from .bounds import StreamSlots
from .forward import Forwarder
from .hubclient import HubClient
from .paths import check_name

#: what every answer of the service carries: nothing is ever sniffed into a page
NOSNIFF = ("X-Content-Type-Options", "nosniff")
#: API answers are data: no script, style or frame may come with them, whatever they hold
API_CSP = "default-src 'none'; frame-ancestors 'none'; sandbox"
#: the page may be framed by the hub's own pages only
PAGE_CSP = "frame-ancestors 'self'"


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

    @property
    def stream_slots(self) -> StreamSlots:
        return self.settings["stream_slots"]

    def set_default_headers(self) -> None:
        super().set_default_headers()
        self.set_header(*NOSNIFF)
        csp = API_CSP if self.is_api_request() else PAGE_CSP
        self.set_header("Content-Security-Policy", csp)

    def get_current_user(self) -> dict[str, Any] | None:
        """The caller resolved in `prepare()` (never the hub's blocking lookup)."""
        return self.caller

    def caller_key(self) -> str:
        caller = self.caller or {}
        return f"{caller.get('kind', 'user')} {caller.get('name', '?')}"

    _stream_slot: str | None = None

    def take_stream_slot(self) -> None:
        """Count this request among the caller's streams (429 past the limit)."""
        key = self.caller_key()
        self.stream_slots.take(key)
        self._stream_slot = key

    def _give_back_stream_slot(self) -> None:
        if self._stream_slot is not None:
            self.stream_slots.give_back(self._stream_slot)
            self._stream_slot = None

    def on_finish(self) -> None:
        self._give_back_stream_slot()

    #: True while work done for the caller goes on after its connection closed (a forward
    #: waiting for a server): the slot is then given back when that work ends
    slot_held_by_work = False

    def on_connection_close(self) -> None:
        super().on_connection_close()
        if not self.slot_held_by_work:
            self._give_back_stream_slot()

    def is_api_request(self) -> bool:
        return self.request.path.startswith(self.settings["service_prefix"] + "api/")

    async def prepare(self) -> None:
        if not self.requires_login:
            return
        self.caller = await self.hub_auth.get_user(self, sync=False)
        if self.caller is None:
            cookie = self.get_secure_cookie(self.hub_auth.cookie_name)
            if cookie and needs_xsrf_check(self):
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

    # -- authorization: the credential's scopes, as the hub decides -------

    def _has(self, scope: str, user: str, server_name: str) -> bool:
        """Whether the caller's credential holds ``scope`` on the server U/S."""
        return bool(
            self.hub_auth.check_scopes(f"{scope}!server={user}/{server_name}", self.caller)
        )

    def may_access(self, user: str, server_name: str) -> bool:
        """Whether the caller's scopes cover ``access:servers!server=U/S``."""
        return self._has("access:servers", user, server_name)

    def may_start(self, user: str, server_name: str) -> bool:
        """Whether the caller's scopes cover ``start:servers`` (or ``servers``) on U/S."""
        return self._has("start:servers", user, server_name)

    def check_access(self, user: str, server_name: str) -> None:
        check_name("user", user)
        check_name("server", server_name)
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
        set_oauth_callback_user(self, await self.hub_auth.get_user(self, sync=False))
