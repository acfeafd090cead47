"""Streams through the service: chunked relay, SSE with seq and resume, ends and departures."""

from __future__ import annotations

import json
import time

import requests

from tests.support.realhub import RealHub, slow_notebook
from tests.support.service_calls import Service, executions_path, ndjson_events, sse_events

EXECS = executions_path("alice")


def test_chunked_post_arrives_event_by_event(
    realhub: RealHub, alice: Service, alice_server: dict, notebooks: dict
) -> None:
    r = alice.post(
        EXECS,
        data={"notebook": notebooks["slow"]},
        headers={"X-Response-Encoding": "chunked"},
        stream=True,
    )
    assert r.status_code == 202
    assert r.headers["Content-Type"].startswith("application/x-ndjson")
    arrivals: list[tuple[float, dict]] = []
    for event in ndjson_events(r):
        arrivals.append((time.monotonic(), event))
    names = [event["event"] for _, event in arrivals]
    assert names[0] == "notebook_start" and names[-1] == "notebook_complete"
    assert names.count("end") == 5
    # 4 cells of 0.7 s: a relay that buffered would deliver everything at once
    first_end = next(t for t, e in arrivals if e["event"] == "end")
    assert arrivals[-1][0] - first_end > 1.5, [(round(t, 2), e["event"]) for t, e in arrivals]


def test_sse_relay_with_seq_ids_and_resume(
    realhub: RealHub, alice: Service, alice_server: dict, notebooks: dict
) -> None:
    exec_id = alice.run("alice", notebooks["slow"])["exec_id"]
    r = alice.get(f"{EXECS}/{exec_id}/progress", headers={"Accept": "text/event-stream"})
    assert r.status_code == 200
    assert r.headers["Content-Type"].startswith("text/event-stream")
    assert r.headers["Cache-Control"] == "no-cache"
    assert r.headers["X-Accel-Buffering"] == "no"
    events = sse_events(r.text)
    ids = [int(ident) for ident, _ in events]
    assert ids == list(range(len(events)))
    assert [data["seq"] for _, data in events] == ids
    assert events[-1][1]["event"] == "notebook_complete"
    # a reconnecting EventSource sends Last-Event-ID: it gets only what came after
    r = alice.get(
        f"{EXECS}/{exec_id}/progress",
        headers={"Accept": "text/event-stream", "Last-Event-ID": "3"},
    )
    resumed = sse_events(r.text)
    assert [int(ident) for ident, _ in resumed] == ids[4:]
    # the same with ?last_event_id= (a fresh EventSource cannot set headers)
    r = alice.get(
        f"{EXECS}/{exec_id}/progress?last_event_id=3", headers={"Accept": "text/event-stream"}
    )
    assert [int(ident) for ident, _ in sse_events(r.text)] == ids[4:]


def test_sse_for_a_post(alice: Service, alice_server: dict, notebooks: dict) -> None:
    r = alice.post(
        EXECS, data={"notebook": notebooks["tiny"]}, headers={"Accept": "text/event-stream"}
    )
    assert r.status_code == 202
    events = sse_events(r.text)
    assert [data["event"] for _, data in events][-1] == "notebook_complete"
    assert [int(ident) for ident, _ in events] == list(range(len(events)))


def test_server_stopped_mid_stream_ends_the_relay(
    realhub: RealHub, alice: Service, alice_server: dict
) -> None:
    realhub.put_notebook("alice", "long.ipynb", slow_notebook(cells=60, seconds=0.5))
    r = alice.post(
        EXECS,
        data={"notebook": "long.ipynb"},
        headers={"X-Response-Encoding": "chunked"},
        stream=True,
        timeout=60,
    )
    stream = ndjson_events(r)
    first = next(stream)
    assert first["event"] == "notebook_start"
    started = time.monotonic()
    realhub.stop_server("alice", wait=False)
    events = []
    try:
        events = list(stream)
    except requests.exceptions.ChunkedEncodingError:
        pass  # an aborted upstream may end the relay without the final chunk
    assert time.monotonic() - started < 30
    assert "notebook_complete" not in [e["event"] for e in events]
    # a server stopped cleanly ends its runs itself ("interrupted: the server stopped",
    # A.6); one that could not has the service end the relay with an event of its own
    # (server_stopped: true; tests/reliability/test_rel_faults.py kills the server)
    final = events[-1]
    assert final["event"] == "notebook_error", events[-3:]
    assert "stopped" in final["error"]
    assert final.get("server_stopped") or "interrupted" in final["execution"]["status"]
    assert final["execution"]["exec_id"] == first["execution"]["exec_id"]
    assert final["execution"]["status"].startswith("error:")
    realhub.wait_stopped("alice")
    # the service answers normally afterwards
    assert alice.get(EXECS).status_code == 409


def test_caller_leaving_closes_upstream(
    realhub: RealHub, alice: Service, alice_server: dict
) -> None:
    realhub.put_notebook("alice", "long.ipynb", slow_notebook(cells=12, seconds=0.5))
    exec_id = alice.run("alice", "long.ipynb")["exec_id"]
    r = alice.get(
        f"{EXECS}/{exec_id}/progress", headers={"Accept": "text/event-stream"}, stream=True
    )
    next(r.iter_lines(chunk_size=1))
    r.close()
    deadline = time.monotonic() + 10
    while "Caller left; closed the upstream stream" not in realhub.log_text():
        assert time.monotonic() < deadline, realhub.log_text()[-5000:]
        time.sleep(0.2)
    # the execution goes on
    done = alice.wait_done("alice", exec_id)
    assert done["status"] == "completed"


def test_service_token_never_reaches_a_caller_or_a_log(
    realhub: RealHub, alice: Service, bob: Service, notebooks: dict
) -> None:
    responses = [
        alice.get("api/users/alice/server"),
        alice.post(EXECS + "?start=1&wait=60", data={"notebook": notebooks["tiny"]}),
        alice.get(EXECS),
        alice.get(f"{EXECS}/missing"),
        alice.post(EXECS, data={}),
        alice.get("api/executions"),
        alice.get("api/users/alice/contents"),
        bob.get(EXECS),
        requests.get(realhub.service_url("api/users/alice/server"), timeout=30),
        requests.get(realhub.service_url(""), timeout=30),
        requests.get(realhub.service_url("api/health"), timeout=30),
        alice.get(f"{EXECS}?token={alice.token}"),
    ]
    token = realhub.service_token
    for r in responses:
        assert token not in r.text
        assert token not in json.dumps(dict(r.headers))
        for old in r.history:
            assert token not in json.dumps(dict(old.headers))
    log = realhub.log_text()
    assert token not in log
    # tokens a caller put in the query string are not logged by the service either
    assert f"token={alice.token}" not in log


def test_the_service_logged_no_error(realhub: RealHub) -> None:
    """After the streams above (callers leaving, servers stopping): no error, no traceback."""
    errors = realhub.uncaught_errors(all_errors=True)
    assert not errors, "\n---\n".join(errors)
