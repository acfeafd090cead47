"""`GET /api/executions` fan-out: slow and broken servers are flagged, never fatal.

The servers here are real HTTP servers (tornado) answering like the extension, a slow one
and a broken one; the hub's listing is given directly, since it is not what is tested.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from servers import free_port
from tornado import web
from tornado.httpclient import AsyncHTTPClient
from tornado.httpserver import HTTPServer

from nbexec_hub.service.fanout import gather_executions
from nbexec_hub.service.hubclient import status_model


class _Executions(web.RequestHandler):
    async def get(self, user: str) -> None:
        assert self.request.headers["Authorization"] == "token service-token"
        if user == "slow":
            await asyncio.sleep(3)
        if user == "broken":
            raise web.HTTPError(500)
        self.finish(json.dumps({"executions": [{"exec_id": f"{user}-1", "status": "completed"}]}))


class _Listing:
    """The ready servers, as the hub would list them."""

    def __init__(self, users: list[str]) -> None:
        self.users = users

    async def list_ready_servers(self) -> list[dict[str, Any]]:
        return [
            status_model(u, "", {"ready": True, "url": f"/user/{u}/"}, "/services/nbexec/")
            for u in self.users
        ]


async def test_fan_out_flags_slow_and_broken_servers() -> None:
    port = free_port()
    server = HTTPServer(web.Application([(r"/user/([^/]+)/api/executions", _Executions)]))
    server.listen(port, "127.0.0.1")
    client = AsyncHTTPClient(force_instance=True)
    try:
        result = await gather_executions(
            _Listing(["alice", "slow", "broken", "hidden"]),  # type: ignore[arg-type]
            client,
            f"http://127.0.0.1:{port}/",
            "service-token",
            lambda user, server_name: user != "hidden",
            concurrency=2,
            timeout=1,
        )
    finally:
        client.close()
        server.stop()
    assert [m["exec_id"] for m in result["executions"]] == ["alice-1"]
    assert result["executions"][0]["user"] == "alice"
    assert result["executions"][0]["server_name"] == ""
    assert result["partial"] is True
    reports = {r["user"]: r for r in result["servers"]}
    assert set(reports) == {"alice", "slow", "broken"}  # "hidden" is not the caller's
    assert reports["alice"]["ok"] and not reports["slow"]["ok"] and not reports["broken"]["ok"]
    assert "599" in reports["slow"]["error"]
    assert "500" in reports["broken"]["error"]
