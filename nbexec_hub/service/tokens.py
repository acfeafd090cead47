"""Per-server tokens: the only credential the service ever sends to a user's server.

A user controls everything in their own server, including every header it receives, so
the service's own token (which may read users, start servers and mint tokens) must never
travel there. For each server U/S the service instead asks the hub for a token *of U* with
the single scope ``access:servers!server=U/S``: whoever reads it in that server gains
access to that very server, which its owner has anyway. Tokens are cached per server,
renewed some time before they expire, renewed at once when the server refuses one (401 or
403), and the replaced token is revoked at the hub.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from .. import errors
from .hubclient import HubClient

log = logging.getLogger("nbexec.tokens")


def server_scope(user: str, server_name: str) -> str:
    """The one scope of a per-server token: access to U/S (S is "" for the default server)."""
    return f"access:servers!server={user}/{server_name}"


@dataclass
class ServerToken:
    """One minted token: its secret, the hub's id for it, and when it stops working."""

    token: str
    token_id: str | None
    expires_at: float
    minted_at: float = 0.0


class ServerTokens:
    """Mints, caches and renews the per-server tokens (one in flight per server)."""

    def __init__(
        self,
        hub: HubClient,
        *,
        lifetime: int = 3600,
        renew_before: float = 600.0,
        min_renew_seconds: float = 30.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.hub = hub
        self.lifetime = lifetime
        self.renew_before = min(renew_before, lifetime / 2)
        #: a refused token younger than this is not replaced: a server that refuses every
        #: token must not make the service mint one per request
        self.min_renew_seconds = min_renew_seconds
        self._clock = clock
        self._tokens: dict[tuple[str, str], ServerToken] = {}
        self._minting: dict[tuple[str, str], asyncio.Future[ServerToken]] = {}
        #: tokens minted since start (a figure for logs and metrics)
        self.minted = 0

    def _fresh(self, entry: ServerToken | None) -> bool:
        return entry is not None and entry.expires_at - self._clock() > self.renew_before

    async def get(self, user: str, server_name: str) -> str:
        """A token for U/S that stays valid for at least `renew_before` seconds."""
        key = (user, server_name)
        entry = self._tokens.get(key)
        if self._fresh(entry):
            return entry.token  # type: ignore[union-attr]
        return (await self._mint(key)).token

    async def renew(self, user: str, server_name: str, refused: str) -> str:
        """A new token for U/S after the server refused `refused` (unless one replaced it,
        or `refused` was minted less than `min_renew_seconds` ago: then `refused` itself)."""
        key = (user, server_name)
        entry = self._tokens.get(key)
        if entry is not None and entry.token != refused and self._fresh(entry):
            return entry.token
        if (
            entry is not None
            and entry.token == refused
            and self._clock() - entry.minted_at < self.min_renew_seconds
        ):
            return refused
        return (await self._mint(key)).token  # the refused one is revoked

    async def _mint(self, key: tuple[str, str]) -> ServerToken:
        pending = self._minting.get(key)
        if pending is None:
            pending = asyncio.ensure_future(self._mint_now(key))
            self._minting[key] = pending
            pending.add_done_callback(lambda _: self._minting.pop(key, None))
        return await asyncio.shield(pending)

    async def _mint_now(self, key: tuple[str, str]) -> ServerToken:
        user, server_name = key
        old = self._tokens.get(key)
        token, token_id, lifetime = await self.hub.mint_token(
            user,
            [server_scope(user, server_name)],
            expires_in=self.lifetime,
            note=f"nbexec-hub: access to the server {user}/{server_name} (made by the service)",
        )
        self.minted += 1
        entry = ServerToken(token, token_id, self._clock() + lifetime, self._clock())
        self._drop_expired()
        self._tokens[key] = entry
        if old is not None and old.token_id:
            asyncio.ensure_future(self._revoke(user, old.token_id))
        return entry

    async def _revoke(self, user: str, token_id: str) -> None:
        try:
            await self.hub.revoke_token(user, token_id)
        except errors.NbexecError as e:  # it expires anyway
            log.info("Could not revoke a replaced server token of %s: %s", user, e)

    def _drop_expired(self) -> None:
        now = self._clock()
        for key in [k for k, v in self._tokens.items() if v.expires_at <= now]:
            del self._tokens[key]
