"""Many executions submitted at once across several users, all through the hub service.

Every execution is a chunked POST read to its final event; a failure is anything but a
202 ending in ``notebook_complete``. Prints completed and failed counts, total wall time
and executions per minute, once per source of kernels (each user's named server of that
kind, hubenv.SERVER_ARGS): forked with a spare (the defaults), forked without, spawned
(cold).

Run alone, from the repository root: ``python -m benchmarks.bench_concurrency``.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from urllib.parse import urlencode

from tornado.httpclient import AsyncHTTPClient, HTTPClientError

from benchmarks import common, hubenv

NAME = "concurrency"


async def run_one(url: str, headers: dict[str, str]) -> str | None:
    """One execution to its end; None when it completed, else what went wrong."""
    chunks: list[bytes] = []
    client = AsyncHTTPClient()
    try:
        resp = await client.fetch(
            url, method="POST", body=urlencode({"notebook": "trivial.ipynb"}),
            headers={**headers, "X-Response-Encoding": "chunked"},
            streaming_callback=chunks.append, request_timeout=600,
        )
    except HTTPClientError as exc:
        return f"HTTP {exc.code}: {b''.join(chunks)[:200]!r}"
    except OSError as exc:
        return f"{type(exc).__name__}: {exc}"
    lines = [line for line in b"".join(chunks).splitlines() if line.strip()]
    last = json.loads(lines[-1]) if lines else {}
    if resp.code != 202 or last.get("event") != "notebook_complete":
        return f"{resp.code} {str(last)[:200]}"
    return None


async def submit_all(
    hub: hubenv.Hub, total: int, users: list[hubenv.HubUser], server: str
) -> list[str | None]:
    AsyncHTTPClient.configure(None, max_clients=total + 10)
    jobs = []
    for i in range(total):
        user = users[i % len(users)]
        url = f"{hub.url}/services/nbexec/api/users/{user.name}/servers/{server}/executions"
        jobs.append(run_one(url, user.headers))
    return await asyncio.gather(*jobs)


def main(hub: hubenv.Hub | None = None) -> list[common.Row]:
    total = common.runs(50, 10)
    n_users = 5 if not common.quick() else 2
    rows = []
    with hubenv.maybe_hub(hub, users=n_users) as running:
        users = running.users[:n_users]
        for user in users:
            running.put_notebook(user, "trivial.ipynb", common.trivial_notebook(10))
        for label, server in (
            ("spare", hubenv.SPARE_SERVER),
            ("forked, no spare", hubenv.FORKED_SERVER),
            ("cold", hubenv.COLD_SERVER),
        ):
            for user in users:
                running.real.start_server(user.name, server)
            time.sleep(3)  # each server's template starts 2 s after the server
            start = time.perf_counter()
            results = asyncio.run(submit_all(running, total, users, server))
            elapsed = time.perf_counter() - start
            for user in users:
                running.real.stop_server(user.name, server)
            failures = [r for r in results if r is not None]
            for failure in failures[:5]:
                print("failure:", failure, file=sys.stderr)
            case = f"{total} executions across {n_users} users at once, {label}"
            rows.append(common.Row(NAME, case, total, {
                "completed": total - len(failures),
                "failures": len(failures),
                "total_s": elapsed,
                "per_minute": (total - len(failures)) / elapsed * 60,
            }))
    return rows


if __name__ == "__main__":
    common.print_rows("bench_concurrency: executions submitted at once through the service", main())
