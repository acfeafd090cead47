"""Long streams must not starve anything: 200 concurrent SSE readers plus ordinary requests.

The readers are alice, an admin and the test's admin service, about 67 each: one caller
may have at most 100 requests and streams in flight (``max_streams_per_caller``, tested in
tests/reliability/test_rel_bounds.py), and alice makes ordinary requests meanwhile."""

from __future__ import annotations

import asyncio
import json
import time

from tornado.httpclient import HTTPRequest
from tornado.simple_httpclient import SimpleAsyncHTTPClient

from tests.support.realhub import RealHub, slow_notebook
from tests.support.service_calls import Service, executions_path, sse_events

READERS = 200


async def test_200_concurrent_sse_readers(
    realhub: RealHub, alice: Service, admin_token: str, alice_server: dict
) -> None:
    realhub.put_notebook("alice", "crowd.ipynb", slow_notebook(cells=30, seconds=0.5))
    exec_id = alice.run("alice", "crowd.ipynb")["exec_id"]
    url = realhub.service_url(f"{executions_path('alice')}/{exec_id}/progress")
    client = SimpleAsyncHTTPClient(force_instance=True, max_clients=READERS + 20)
    async def reader(token: str) -> tuple[float, float, str]:
        headers = {"Authorization": f"token {token}", "Accept": "text/event-stream"}
        body = bytearray()
        first: list[float] = []

        def on_chunk(chunk: bytes) -> None:
            if not first:
                first.append(time.monotonic())
            body.extend(chunk)

        req = HTTPRequest(url, headers=headers, streaming_callback=on_chunk, request_timeout=120)
        resp = await client.fetch(req)
        assert resp.code == 200
        return first[0], time.monotonic(), body.decode()

    async def ordinary() -> float:
        started = time.monotonic()
        resp = await client.fetch(
            HTTPRequest(
                realhub.service_url("api/users/alice/server"),
                headers={"Authorization": f"token {alice.token}"},
                request_timeout=30,
            )
        )
        assert json.loads(resp.body)["state"] == "ready"
        return time.monotonic() - started

    try:
        tokens = [[alice.token, admin_token, realhub.admin_token][i % 3] for i in range(READERS)]
        readers = [asyncio.ensure_future(reader(token)) for token in tokens]
        await asyncio.sleep(4)
        # while the streams are open, ordinary requests are answered promptly
        durations = await asyncio.gather(*(ordinary() for _ in range(10)))
        assert max(durations) < 10, durations
        listing = await client.fetch(
            HTTPRequest(
                realhub.service_url(executions_path("alice")),
                headers={"Authorization": f"token {alice.token}"},
                request_timeout=30,
            )
        )
        assert listing.code == 200
        results = await asyncio.wait_for(asyncio.gather(*readers), timeout=110)
    finally:
        client.close()
    # every reader was open at the same time as every other one
    assert max(first for first, _, _ in results) < min(end for _, end, _ in results)
    for _, _, text in results:
        events = sse_events(text)
        assert [int(ident) for ident, _ in events] == list(range(len(events)))
        assert events[-1][1]["event"] == "notebook_complete"
