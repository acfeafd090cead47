"""Load through the service on a real hub: many executions at once, many readers of one
execution, and a reader that stops reading. Functional checks only (every execution
completes, every reader gets every event); timings belong to benchmarks/."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from typing import Any
from urllib.parse import urlencode, urlparse

import nbformat
import pytest
from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest

from tests.support.realhub import RealHub, tiny_notebook
from tests.support.rel_helpers import EXECS, gated_notebook
from tests.support.service_calls import Service, SSEChunkDecoder, sse_messages


async def _run_chunked(client: AsyncHTTPClient, url: str, token: str, notebook: str) -> str:
    """One execution through the service to its end: its final event name (or the error)."""
    chunks: list[bytes] = []
    try:
        await client.fetch(HTTPRequest(
            url, method="POST", body=urlencode({"notebook": notebook}),
            headers={"Authorization": f"token {token}", "X-Response-Encoding": "chunked"},
            streaming_callback=chunks.append, request_timeout=240,
        ))
    except (HTTPClientError, OSError) as exc:
        return f"{type(exc).__name__}: {exc} {b''.join(chunks)[:200]!r}"
    lines = [line for line in b"".join(chunks).splitlines() if line.strip()]
    return json.loads(lines[-1])["event"] if lines else "no events"


@pytest.mark.timeout(300)
async def test_fifty_concurrent_executions_across_two_users(
    realhub: RealHub, alice_token: str, bob_token: str
) -> None:
    for user in ("alice", "bob"):
        realhub.start_server(user)
        realhub.put_notebook(user, "load/nb.ipynb", tiny_notebook())
    client = AsyncHTTPClient(force_instance=True, max_clients=60)
    try:
        results = await asyncio.gather(*(
            _run_chunked(client, realhub.service_url(f"api/users/{user}/executions"), token,
                         "load/nb.ipynb")
            for i in range(50)
            for user, token in [(("alice", alice_token), ("bob", bob_token))[i % 2]]
        ))
    finally:
        client.close()
    failures = [r for r in results if r != "notebook_complete"]
    assert not failures, f"{len(failures)} of 50 failed: {failures[:3]}"


class Reader:
    def __init__(self) -> None:
        self.decoder = SSEChunkDecoder()
        self.seqs: list[int] = []
        self.connected = asyncio.Event()

    def on_chunk(self, chunk: bytes) -> None:
        self.seqs += [event["seq"] for event in self.decoder.feed(chunk)]
        if self.seqs:
            self.connected.set()


@pytest.mark.timeout(240)
async def test_two_hundred_concurrent_readers_get_every_event(
    realhub: RealHub, alice_token: str, admin_token: str, alice_server: Any
) -> None:
    """Alice, an admin and the admin service read about 67 streams each (one caller may
    have 100 requests and streams in flight at most)."""
    go = f"go-readers-{time.monotonic_ns()}"
    realhub.put_notebook("alice", "load/gated.ipynb", gated_notebook(go, cells=5))
    caller = Service(realhub, alice_token)
    exec_id = caller.run("alice", "load/gated.ipynb")["exec_id"]
    url = realhub.service_url(f"{EXECS}/{exec_id}/progress")
    client = AsyncHTTPClient(force_instance=True, max_clients=220)
    readers = [Reader() for _ in range(200)]
    try:
        fetches = [
            asyncio.ensure_future(client.fetch(HTTPRequest(
                url, headers={"Authorization": f"token {token}",
                              "Accept": "text/event-stream"},
                streaming_callback=r.on_chunk, request_timeout=180, connect_timeout=60,
            )))
            for i, r in enumerate(readers)
            for token in [(alice_token, admin_token, realhub.admin_token)[i % 3]]
        ]
        await asyncio.wait_for(asyncio.gather(*(r.connected.wait() for r in readers)), 120)
        (realhub.home("alice") / "load" / go).write_text("go")
        await asyncio.wait_for(asyncio.gather(*fetches), 150)
    finally:
        client.close()
        (realhub.home("alice") / "load" / go).unlink(missing_ok=True)
    total = len(readers[0].seqs)
    assert total >= 14, readers[0].seqs  # start + 7 cells x (start, end) + complete
    for reader in readers:
        assert reader.seqs == list(range(total)), reader.seqs


def test_a_reader_that_stops_reading_does_not_hold_the_execution(
    realhub: RealHub, alice_token: str, alice_server: Any
) -> None:
    """A caller that never reads its SSE stream: the run still completes (it does not wait
    for that reader), and the reader still gets every event once it reads again."""
    go = f"go-chatty-{time.monotonic_ns()}"
    nb = tiny_notebook()
    # a gate first, so that the stalled reader is connected before the first output
    nb.cells = [gated_notebook(go).cells[1]] + [
        nbformat.v4.new_code_cell(f"print('{i % 10}' * 20000)") for i in range(150)
    ]
    realhub.put_notebook("alice", "load/chatty.ipynb", nb)
    caller = Service(realhub, alice_token)
    exec_id = caller.run("alice", "load/chatty.ipynb")["exec_id"]
    proxy = urlparse(realhub.url)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect((proxy.hostname, proxy.port))
    path = urlparse(realhub.service_url(f"{EXECS}/{exec_id}/progress")).path
    sock.sendall(
        f"GET {path} HTTP/1.1\r\nHost: {proxy.netloc}\r\nAuthorization: token {alice_token}\r\n"
        "Accept: text/event-stream\r\n\r\n".encode()
    )
    head = sock.recv(1024)  # the status line: connected; then stop reading
    assert b" 200 " in head.split(b"\r\n", 1)[0], head
    try:
        (realhub.home("alice") / "load" / go).write_text("go")
        done = caller.wait_done("alice", exec_id, timeout=120)
        assert done["status"] == "completed"
        # now read it all: every event arrives, the last one final
        sock.settimeout(60)
        received = head
        while b"notebook_complete" not in received:
            chunk = sock.recv(1 << 20)
            assert chunk, "the stream ended before the final event"
            received += chunk
    finally:
        sock.close()
        (realhub.home("alice") / "load" / go).unlink(missing_ok=True)
    assert received.count(b"\ndata: ") + received.startswith(b"data: ") >= 300


def test_readers_of_a_finished_execution_get_the_same_events(
    realhub: RealHub, alice_token: str, alice_server: Any
) -> None:
    """Replay after the end: what live readers saw, in the same order, with the same seqs."""
    realhub.put_notebook("alice", "load/nb.ipynb", tiny_notebook())
    caller = Service(realhub, alice_token)
    exec_id = caller.run("alice", "load/nb.ipynb")["exec_id"]
    caller.wait_done("alice", exec_id, timeout=90)
    replays = []
    for _ in range(3):
        resp = caller.request("GET", f"{EXECS}/{exec_id}/progress", stream=True,
                              headers={"Accept": "text/event-stream"})
        replays.append([(ident, event["event"]) for ident, event in sse_messages(resp)])
    assert replays[0] == replays[1] == replays[2]
    assert replays[0][-1][1] == "notebook_complete"
