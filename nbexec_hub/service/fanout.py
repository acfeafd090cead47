"""`GET /api/executions`: the executions of every ready server a caller may access.

Which servers to ask follows the caller's scopes, not the hub's size: a caller whose
``access:servers`` scopes name only their own servers and servers shared with them costs
one hub call per user named (usually one); wider callers (admins) list the users with
ready servers page by page. The servers are asked concurrently (bounded by a semaphore,
each with a timeout and a size cap, each with its own per-server token); a slow, broken or
hostile server is flagged in the answer and never fails the whole of it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from tornado.httpclient import HTTPRequest

from .. import errors, protocol
from .forward import Forwarder
from .paths import server_url
from .streaming import close_upstream, fetch_quietly

log = logging.getLogger("nbexec.fanout")


def users_reached(scopes: list[str]) -> set[str] | None:
    """The users whose servers some ``access:servers`` scope names, or None for "any"."""
    users: set[str] = set()
    for scope in scopes:
        base, _, only = scope.partition("!")
        if base != "access:servers":
            continue
        kind, _, value = only.partition("=")
        if kind == "user":
            users.add(value)
        elif kind == "server":
            users.add(value.split("/", 1)[0])
        else:  # unfiltered, or by group: ask the hub for everyone
            return None
    return users


async def candidate_servers(forwarder: Forwarder, scopes: list[str]) -> list[dict[str, Any]]:
    """Ready servers the caller's scopes may reach (still to be checked one by one)."""
    hub = forwarder.hub
    users = users_reached(scopes)
    if users is None:
        return await hub.list_ready_servers()
    found: list[dict[str, Any]] = []
    for name in sorted(users):
        try:
            found.extend(hub.ready_servers_of(await hub.get_user(name)))
        except errors.NotFound:
            continue
    return found


async def gather_executions(
    forwarder: Forwarder,
    scopes: list[str],
    may_access: Callable[[str, str], bool],
    *,
    concurrency: int = 10,
    timeout: float = 10.0,
    max_bytes: int = 16 * 1024 * 1024,
) -> dict[str, Any]:
    """``{"executions": [...], "servers": [...], "partial": bool}`` across accessible servers."""
    servers = [
        s for s in await candidate_servers(forwarder, scopes)
        if may_access(s["user"], s["server_name"])
    ]
    limit = asyncio.Semaphore(concurrency)

    async def one(status: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        user, server_name = status["user"], status["server_name"]
        report: dict[str, Any] = {
            "user": user, "server_name": server_name, "ok": False, "error": None
        }
        async with limit:
            try:
                body = await fetch_list(forwarder, status, timeout, max_bytes)
                models = protocol.parse_json(body)["executions"]
                if not isinstance(models, list) or not all(isinstance(m, dict) for m in models):
                    raise TypeError("not a list of models")
            except errors.NbexecError as e:
                report["error"] = e.message
            except (ValueError, KeyError, TypeError):
                report["error"] = "the server's answer was not an executions list"
            except Exception as e:  # nothing one server answers may fail the whole list
                log.exception("Listing executions of %s/%s", user, server_name)
                report["error"] = f"the server's answer could not be read ({type(e).__name__})"
        if report["error"]:
            log.warning("Listing executions of %s/%s failed: %s", user, server_name,
                        report["error"])
            return report, []
        report["ok"] = True
        for model in models:
            model["user"] = user
            model["server_name"] = server_name
        return report, models

    results = await asyncio.gather(*(one(s) for s in servers))
    executions = [model for _, models in results for model in models]
    reports = [report for report, _ in results]
    return {
        "executions": executions,
        "servers": reports,
        "partial": any(not r["ok"] for r in reports),
    }


async def fetch_list(
    forwarder: Forwarder, status: dict[str, Any], timeout: float, max_bytes: int
) -> bytes:
    """One server's ``GET api/executions`` body, read up to `max_bytes` (else an error);
    a refused per-server token is renewed once."""
    user, server_name = status["user"], status["server_name"]
    token = await forwarder.tokens.get(user, server_name)
    code, body = await _get_capped(forwarder, status, token, timeout, max_bytes)
    if code in (401, 403):
        renewed = await forwarder.tokens.renew(user, server_name, token)
        if renewed != token:
            code, body = await _get_capped(forwarder, status, renewed, timeout, max_bytes)
    if code != 200:
        raise errors.UpstreamError(f"the server answered {code}")
    return body


async def _get_capped(
    forwarder: Forwarder, status: dict[str, Any], token: str, timeout: float, max_bytes: int
) -> tuple[int, bytes]:
    chunks: list[bytes] = []
    size = 0

    def take(chunk: bytes) -> None:
        nonlocal size
        size += len(chunk)
        if size > max_bytes:  # never raise here: tornado would log an uncaught exception
            close_upstream(request)
            return
        chunks.append(chunk)

    request = HTTPRequest(
        server_url(forwarder.proxy_url, status["url"], "api/executions"),
        headers={"Authorization": f"token {token}", "Accept": "application/json"},
        request_timeout=timeout,
        connect_timeout=min(timeout, 10),
        follow_redirects=False,
        streaming_callback=take,
    )
    resp = await fetch_quietly(forwarder.client, request)
    if size > max_bytes:
        raise errors.UpstreamError(f"the server answered over {max_bytes} bytes")
    if resp.code == 599:
        raise errors.UpstreamError(f"could not read the answer: {resp.error}")
    return resp.code, b"".join(chunks)
