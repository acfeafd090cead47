"""`GET /api/executions`: the executions of every ready server a caller may access.

The servers are asked concurrently (bounded by a semaphore, each with a
timeout); a slow or broken server is flagged in the answer and never fails
the whole of it.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from typing import Any

from tornado.httpclient import AsyncHTTPClient, HTTPRequest

from .hubclient import HubClient
from .streaming import fetch_quietly

log = logging.getLogger("nbexec.fanout")


async def gather_executions(
    hub: HubClient,
    client: AsyncHTTPClient,
    proxy_url: str,
    api_token: str,
    may_access: Callable[[str, str], bool],
    *,
    concurrency: int = 10,
    timeout: float = 10.0,
) -> dict[str, Any]:
    """``{"executions": [...], "servers": [...], "partial": bool}`` across accessible servers."""
    servers = [s for s in await hub.list_ready_servers() if may_access(s["user"], s["server_name"])]
    limit = asyncio.Semaphore(concurrency)

    async def one(status: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        report: dict[str, Any] = {
            "user": status["user"],
            "server_name": status["server_name"],
            "ok": False,
            "error": None,
        }
        url = proxy_url.rstrip("/") + status["url"].rstrip("/") + "/api/executions"
        async with limit:
            resp = await fetch_quietly(
                client,
                HTTPRequest(
                    url,
                    headers={"Authorization": f"token {api_token}", "Accept": "application/json"},
                    request_timeout=timeout,
                    connect_timeout=min(timeout, 10),
                    follow_redirects=False,
                ),
            )
        if resp.code != 200:
            report["error"] = f"{resp.code}: {resp.error or resp.reason}"
            log.warning("Listing executions of %s/%s failed: %s", status["user"],
                        status["server_name"], report["error"])
            return report, []
        try:
            models = json.loads(resp.body)["executions"]
        except (ValueError, KeyError, TypeError):
            report["error"] = "the server's answer was not an executions list"
            return report, []
        report["ok"] = True
        for model in models:
            model["user"] = status["user"]
            model["server_name"] = status["server_name"]
        return report, models

    results = await asyncio.gather(*(one(s) for s in servers))
    executions = [model for _, models in results for model in models]
    reports = [report for report, _ in results]
    return {
        "executions": executions,
        "servers": reports,
        "partial": any(not r["ok"] for r in reports),
    }
