"""Progress streams: replay with seq, Last-Event-ID (header and query), SSE, disconnects."""

from __future__ import annotations

import asyncio
import json

from tests.support.ext_helpers import wait_done, wait_for_event

SSE_HEADERS = {"Accept": "text/event-stream"}


def parse_sse(text: str) -> list[tuple[int, dict]]:
    """(id, data) of each SSE message; comments are dropped."""
    messages = []
    for block in text.split("\n\n"):
        lines = [line for line in block.splitlines() if line and not line.startswith(":")]
        if not lines:
            continue
        assert lines[0].startswith("id: ") and lines[1].startswith("data: "), block
        messages.append((int(lines[0][4:]), json.loads(lines[1][6:])))
    return messages


async def progress(jp_fetch, exec_id, headers=None, params=None):
    return await jp_fetch("api", "executions", exec_id, "progress", headers=dict(headers or {}),
                          params=params or {}, raise_error=False)


async def test_progress_replays_every_event_with_seq(jp_fetch, run):
    posted = await run(chunked=True, notebook="simple.ipynb")
    exec_id = posted[0]["execution"]["exec_id"]
    response = await progress(jp_fetch, exec_id)
    assert response.code == 200
    assert response.headers["Content-Type"] == "application/x-ndjson"
    events = [json.loads(line) for line in response.body.decode().splitlines()]
    assert [e["seq"] for e in events] == list(range(len(posted)))
    assert [dict(e, seq=None) for e in events] == [dict(e, seq=None) for e in posted]
    assert list(events[1]) == ["event", "timestamp", "progress", "cell", "seq"]


async def test_resume_after_last_event_id_header_and_query(jp_fetch, run):
    posted = await run(chunked=True, notebook="simple.ipynb")
    exec_id = posted[0]["execution"]["exec_id"]
    total = len(posted)
    response = await progress(jp_fetch, exec_id, headers={"Last-Event-ID": "3"})
    assert [json.loads(x)["seq"] for x in response.body.decode().splitlines()] == list(
        range(4, total)
    )
    response = await progress(jp_fetch, exec_id, params={"last_event_id": "5"})
    assert [json.loads(x)["seq"] for x in response.body.decode().splitlines()] == list(
        range(6, total)
    )
    response = await progress(jp_fetch, exec_id, headers=SSE_HEADERS,
                              params={"last_event_id": "2"})
    assert [seq for seq, _ in parse_sse(response.body.decode())] == list(range(3, total))
    headers = dict(SSE_HEADERS, **{"Last-Event-ID": str(total - 2)})
    response = await progress(jp_fetch, exec_id, headers=headers, params={"last_event_id": "0"})
    messages = parse_sse(response.body.decode())
    assert [seq for seq, _ in messages] == [total - 1]  # the header wins over the query
    assert messages[0][1]["event"] == "notebook_complete"
    response = await progress(jp_fetch, exec_id, headers={"Last-Event-ID": str(total + 5)})
    assert response.code == 200 and response.body == b""
    response = await progress(jp_fetch, exec_id, headers={"Last-Event-ID": "garbage"})
    assert len(response.body.decode().splitlines()) == total  # unparsable: from the start


async def test_sse_format_and_headers(jp_fetch, run):
    posted = await run(chunked=True, notebook="noparams.ipynb")
    response = await progress(jp_fetch, posted[0]["execution"]["exec_id"], headers=SSE_HEADERS)
    assert response.headers["Content-Type"].startswith("text/event-stream")
    assert response.headers["Cache-Control"] == "no-cache"
    assert response.headers["X-Accel-Buffering"] == "no"
    messages = parse_sse(response.body.decode())
    assert [(seq, data["seq"]) for seq, data in messages] == [(i, i) for i in range(5)]
    assert [data["event"] for _, data in messages] == [
        "notebook_start", "start", "output", "end", "notebook_complete"
    ]


async def test_progress_follows_a_live_run_with_keepalives(jp_fetch, run, manager):
    started = await run(notebook="quiet.ipynb")
    ex = manager.get(started["execution"]["exec_id"])
    chunks: list[bytes] = []
    done_when_first_chunk: list[bool] = []

    def on_chunk(chunk: bytes) -> None:
        if not chunks:
            done_when_first_chunk.append(ex.is_done)
        chunks.append(chunk)

    response = await jp_fetch("api", "executions", ex.exec_id, "progress",
                              headers=dict(SSE_HEADERS),
                              streaming_callback=on_chunk)
    assert response.code == 200 and done_when_first_chunk == [False]
    text = b"".join(chunks).decode()
    assert ": keepalive" in text  # 0.5 s keep-alives in these tests, a silent cell of 1.5 s
    messages = parse_sse(text)
    assert [seq for seq, _ in messages] == list(range(len(messages)))
    assert messages[-1][1]["event"] == "notebook_complete"
    assert len(chunks) >= 3  # flushed event by event, not in one piece


async def test_live_chunked_post_is_flushed_per_event(jp_fetch):
    chunks: list[bytes] = []
    response = await jp_fetch(
        "api", "executions", method="POST", body="notebook=steps.ipynb",
        headers={"X-Response-Encoding": "chunked"}, streaming_callback=chunks.append,
    )
    assert response.code == 202
    assert response.headers["Content-Type"] == "application/x-ndjson"
    events = [json.loads(x) for x in b"".join(chunks).decode().splitlines()]
    assert events[-1]["event"] == "notebook_complete" and len(chunks) > 5


async def _open_and_drop(port: int, request: bytes, until: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    await writer.drain()
    seen = b""
    while until not in seen:
        line = await asyncio.wait_for(reader.readline(), 30)
        assert line, seen
        seen += line
    writer.close()
    await writer.wait_closed()
    return seen


async def test_a_client_that_disconnects_does_not_stop_the_run(
    jp_fetch, jp_http_port, jp_base_url, jp_auth_header, manager
):
    body = b"notebook=steps.ipynb"
    request = (
        f"POST {jp_base_url}api/executions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Authorization: {jp_auth_header['Authorization']}\r\n"
        "Content-Type: application/x-www-form-urlencoded\r\nX-Response-Encoding: chunked\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    seen = await _open_and_drop(jp_http_port, request, b'"event": "start"')
    assert b"202 Accepted" in seen
    [ex] = manager.list()
    assert not ex.is_done
    # a progress reader that goes away mid-stream does not stop it either
    request = (
        f"GET {jp_base_url}api/executions/{ex.exec_id}/progress HTTP/1.1\r\n"
        f"Host: 127.0.0.1\r\nAuthorization: {jp_auth_header['Authorization']}\r\n"
        "Accept: text/event-stream\r\n\r\n"
    ).encode()
    await _open_and_drop(jp_http_port, request, b"data: ")
    await wait_done(ex)
    assert ex.status == "completed" and ex.progress == "6/6"


async def test_progress_of_an_unknown_execution_is_404(jp_fetch):
    response = await progress(jp_fetch, "does-not-exist")
    assert response.code == 404
    assert json.loads(response.body)["reason"] == "NotFound"


async def test_a_slow_reader_does_not_hold_the_run(run, manager):
    started = await run(notebook="steps.ipynb")
    ex = manager.get(started["execution"]["exec_id"])
    await wait_for_event(ex, "start")
    # nobody reads this execution's events: it still runs to the end
    await wait_done(ex)
    assert ex.status == "completed"
