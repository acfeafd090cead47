"""`GET /api/executions` fan-out: slow, broken and hostile servers are flagged, never fatal.

The servers here are real HTTP servers (tornado) answering like the extension, a slow one,
a broken one and one answering far too much; the hub's listing and token minting are given
directly, since they are not what is tested (tests/reliability/test_rel_attacks.py asks a
real hub).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from tornado import web
from tornado.httpclient import AsyncHTTPClient
from tornado.httpserver import HTTPServer

from nbexec_hub.service.bounds import RelayLimits
from nbexec_hub.service.fanout import gather_executions, users_reached
from nbexec_hub.service.forward import Forwarder
from nbexec_hub.service.hubclient import status_model
from nbexec_hub.service.tokens import ServerTokens
from tests.support.servers import free_port


class _Executions(web.RequestHandler):
    async def get(self, user: str) -> None:
        # each server gets a token minted for its own user, never the service's
        assert self.request.headers["Authorization"] == f"token minted-for-{user}"
        if user == "slow":
            await asyncio.sleep(3)
        if user == "broken":
            raise web.HTTPError(500)
        if user == "huge":
            for _ in range(40):
                self.write(b" " * 1024 * 1024)
                await self.flush()
        self.finish(json.dumps({"executions": [{"exec_id": f"{user}-1", "status": "completed"}]}))


class _Hub:
    """The ready servers, as the hub would list them, and its token minting."""

    def __init__(self, users: list[str]) -> None:
        self.users = users

    async def list_ready_servers(self) -> list[dict[str, Any]]:
        return [
            status_model(u, "", {"ready": True, "url": f"/user/{u}/"}, "/services/nbexec/")
            for u in self.users
        ]

    async def mint_token(self, user: str, scopes: list[str], **kw: Any) -> tuple:
        assert scopes == [f"access:servers!server={user}/"]
        return f"minted-for-{user}", None, 3600


async def test_fan_out_flags_slow_and_broken_servers() -> None:
    port = free_port()
    server = HTTPServer(web.Application([(r"/user/([^/]+)/api/executions", _Executions)]))
    server.listen(port, "127.0.0.1")
    client = AsyncHTTPClient(force_instance=True)
    hub = _Hub(["alice", "slow", "broken", "huge", "hidden"])
    tokens = ServerTokens(hub)  # type: ignore[arg-type]
    forwarder = Forwarder(
        hub, tokens, None, client, f"http://127.0.0.1:{port}/", RelayLimits()  # type: ignore[arg-type]
    )
    try:
        result = await gather_executions(
            forwarder,
            ["access:servers"],
            lambda user, server_name: user != "hidden",
            concurrency=2,
            timeout=1,
            max_bytes=1024 * 1024,
        )
    finally:
        client.close()
        server.stop()
    assert [m["exec_id"] for m in result["executions"]] == ["alice-1"]
    assert result["executions"][0]["user"] == "alice"
    assert result["executions"][0]["server_name"] == ""
    assert result["partial"] is True
    reports = {r["user"]: r for r in result["servers"]}
    assert set(reports) == {"alice", "slow", "broken", "huge"}  # "hidden" is not the caller's
    assert reports["alice"]["ok"]
    assert not any(reports[u]["ok"] for u in ("slow", "broken", "huge"))
    assert "Timeout" in reports["slow"]["error"]
    assert "500" in reports["broken"]["error"]
    assert "over 1048576 bytes" in reports["huge"]["error"]


def test_which_users_a_caller_reaches() -> None:
    """A narrow caller costs one hub call per user named, not a listing of the hub."""
    assert users_reached(["access:servers!user=bob", "read:users!user=bob"]) == {"bob"}
    assert users_reached(["access:servers!server=bob/", "access:servers!server=al/x"]) == {
        "bob", "al"
    }
    assert users_reached(["access:servers"]) is None
    assert users_reached(["access:servers!group=team"]) is None
    assert users_reached(["access:services!service=nbexec"]) == set()
