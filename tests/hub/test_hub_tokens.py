"""Per-server tokens (CONTRACT B.1): minted by the hub for the server's owner, one scope,
cached, renewed before they expire and when a server refuses one, replaced ones revoked."""

from __future__ import annotations

import asyncio
from typing import Any

from nbexec_hub import errors
from nbexec_hub.service.tokens import ServerTokens, server_scope
from tests.support.realhub import RealHub
from tests.support.service_calls import Service, executions_path


class _Hub:
    """Token minting as the hub answers it (the real hub is used below)."""

    def __init__(self) -> None:
        self.minted: list[tuple[str, list[str], int]] = []
        self.revoked: list[str] = []
        self.fail = False

    async def mint_token(self, user: str, scopes: list[str], *, expires_in: int, note: str):
        await asyncio.sleep(0.01)
        if self.fail:
            raise errors.UpstreamError("the hub is down")
        self.minted.append((user, scopes, expires_in))
        n = len(self.minted)
        return f"t{n}", f"a{n}", expires_in

    async def revoke_token(self, user: str, token_id: str) -> None:
        self.revoked.append(token_id)


async def test_tokens_are_cached_renewed_before_expiry_and_revoked() -> None:
    now = [1000.0]
    hub = _Hub()
    tokens = ServerTokens(hub, lifetime=3600, renew_before=600, clock=lambda: now[0])  # type: ignore[arg-type]
    # many requests at once share one mint
    got = await asyncio.gather(*(tokens.get("alice", "") for _ in range(20)))
    assert set(got) == {"t1"} and len(hub.minted) == 1
    assert hub.minted[0][1] == ["access:servers!server=alice/"]
    assert await tokens.get("alice", "s") == "t2"  # one per server
    now[0] += 2999  # still more than 10 minutes left
    assert await tokens.get("alice", "") == "t1"
    now[0] += 2  # less than 10 minutes left: a new one, the old one revoked
    assert await tokens.get("alice", "") == "t3"
    await asyncio.sleep(0.05)
    assert hub.revoked == ["a1"]


async def test_a_refused_token_is_renewed_once() -> None:
    now = [1000.0]
    hub = _Hub()
    tokens = ServerTokens(hub, min_renew_seconds=30, clock=lambda: now[0])  # type: ignore[arg-type]
    first = await tokens.get("bob", "")
    # refused right after it was minted: kept (a server refusing every token would
    # otherwise have a token minted per request)
    assert await tokens.renew("bob", "", first) == first and len(hub.minted) == 1
    now[0] += 31
    renewed = await asyncio.gather(*(tokens.renew("bob", "", first) for _ in range(5)))
    assert set(renewed) == {"t2"} and len(hub.minted) == 2
    # a refusal of a token already replaced does not mint again
    assert await tokens.renew("bob", "", first) == "t2"
    hub.fail = True
    now[0] += 31
    try:
        await tokens.renew("bob", "", "t2")
    except errors.UpstreamError:
        pass
    else:
        raise AssertionError("a failing hub must surface as an upstream error")


def test_server_scope_names_one_server() -> None:
    assert server_scope("alice", "") == "access:servers!server=alice/"
    assert server_scope("alice", "gpu") == "access:servers!server=alice/gpu"


def _nbexec_tokens(hub: RealHub, user: str) -> list[dict[str, Any]]:
    listing = hub.api("GET", f"/users/{user}/tokens").json()["api_tokens"]
    return [t for t in listing if (t.get("note") or "").startswith("nbexec-hub")]


def test_minted_tokens_carry_one_scope_and_expire(
    realhub: RealHub, alice: Service, alice_server: dict
) -> None:
    assert alice.get(executions_path("alice")).status_code == 200
    minted = _nbexec_tokens(realhub, "alice")
    assert minted, "the service minted no token for alice's server"
    for token in minted:
        # one server of alice's each (the hub lists the identity scopes it adds to every
        # token of alice's too: her name and groups)
        powers = [s for s in token["scopes"] if not s.startswith("read:users:")]
        assert len(powers) == 1 and powers[0].startswith("access:servers!server=alice/")
        assert token["note"].endswith(f"{powers[0].partition('=')[2]} (made by the service)")
        assert token["expires_at"], "per-server tokens expire"
