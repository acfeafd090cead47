"""`NbexecClient` against a real `jupyter server` with the extension and real ipykernels."""

from __future__ import annotations

import json
import re
import time

import nbformat
import pytest

from nbexec_hub.client import NbexecAPIError, NbexecClient


def kinds(events):
    """Event names, the live ``output`` events left out (test_cli_log_output.py has them)."""
    return [e["event"] for e in events if e["event"] != "output"]


def test_run_waits_and_calls_back_for_every_event(server_client, jupyter_server):
    events = []
    model = server_client.run("greet.ipynb", {"name": "Ada", "times": "2"},
                              on_event=events.append)
    assert model["status"] == "completed"
    # 3 code cells and the injected-parameters one
    assert kinds(events) == ["notebook_start"] + ["start", "end"] * 4 + ["notebook_complete"]
    assert [e["progress"] for e in events if e["event"] == "end"] == ["1/4", "2/4", "3/4", "4/4"]
    assert events[-1]["execution"] == model
    nb = nbformat.read(jupyter_server.root / model["output_path"], 4)
    outputs = [o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert "hello, Adahello, Ada\n" in outputs
    assert "int bool 'Ada'\n" in outputs  # "2" converted to the declared int


def test_typed_parameters_go_as_json(server_client, jupyter_server):
    model = server_client.run("greet.ipynb", {"loud": True, "times": 1, "name": "Bo"},
                              output_path="typed.ipynb")
    assert model["status"] == "completed"
    assert model["output_path"] == "typed.ipynb"
    nb = nbformat.read(jupyter_server.root / "typed.ipynb", 4)
    text = json.dumps([c.get("outputs") for c in nb.cells])
    assert "HELLO, Bo" in text


def test_start_without_waiting_then_follow(server_client):
    model = server_client.run("greet.ipynb", wait=False)
    assert model["status"] in ("initializing", "executing")
    seen = []
    final = server_client.follow(model["exec_id"], on_event=seen.append)
    assert final["status"] == "completed"
    assert seen[0]["event"] == "notebook_start" and seen[-1]["event"] == "notebook_complete"
    assert [e["seq"] for e in seen] == list(range(len(seen)))
    assert server_client.get(model["exec_id"])["status"] == "completed"
    assert model["exec_id"] in [m["exec_id"] for m in server_client.list()]


def test_progress_after_a_seq_skips_what_was_seen(server_client):
    model = server_client.run("greet.ipynb")
    events = list(server_client.progress(model["exec_id"], after_seq=2))
    assert events[0]["seq"] == 3
    assert events[-1]["event"] == "notebook_complete"


def test_parameters(server_client):
    body = server_client.parameters("greet.ipynb")
    by_name = {p["name"]: p for p in body["parameters"]}
    assert list(by_name) == ["name", "times", "loud"]
    assert by_name["times"]["type"] == "int"
    assert by_name["name"]["help"] == "who to greet"


def test_failed_execution_returns_the_error_model(server_client):
    events = []
    model = server_client.run("fail.ipynb", on_event=events.append)
    assert model["status"].startswith("error")
    assert events[-1]["event"] == "notebook_error"
    assert "boom from the nbexec client tests" in events[-1]["error"]


def test_shutdown_and_delete(server_client):
    model = server_client.run("slow.ipynb", {"pause": "5"}, wait=False)
    exec_id = model["exec_id"]
    for event in server_client.progress(exec_id):
        if event["event"] == "start" and "sleep" in event["cell"]["source"]:
            break
    final = server_client.shutdown(exec_id)
    assert final is not None and final["exec_id"] == exec_id
    assert final["completed_at"] is not None
    assert final["status"] != "completed"
    server_client.delete(exec_id)
    with pytest.raises(NbexecAPIError) as exc:
        server_client.get(exec_id)
    assert exc.value.status == 404


def test_delete_all(server_client):
    for _ in range(2):
        server_client.run("greet.ipynb", wait=False)
    assert len(server_client.list()) >= 2
    server_client.delete_all()
    deadline = time.monotonic() + 10
    while server_client.list() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert server_client.list() == []


@pytest.mark.parametrize(
    "call, status, words",
    [
        (lambda c: c.get("no-such-id"), 404, ""),
        (lambda c: c.run("missing.ipynb"), 404, "missing.ipynb"),
        (lambda c: c.run("greet.ipynb", overwrite=True), 400, "output_path"),
        (lambda c: c.run("greet.ipynb", kernel="no-such-kernel"), 400, "no-such-kernel"),
        (lambda c: c.parameters("missing.ipynb"), 404, ""),
    ],
)
def test_errors_carry_status_and_server_message(server_client, call, status, words):
    with pytest.raises(NbexecAPIError) as exc:
        call(server_client)
    assert exc.value.status == status
    assert exc.value.message and words in exc.value.message
    assert isinstance(exc.value.body, dict) and exc.value.body["message"] == exc.value.message


def test_bad_token_is_401(jupyter_server):
    client = NbexecClient.for_server(jupyter_server.url, "wrong")
    with pytest.raises(NbexecAPIError) as exc:
        client.list()
    assert exc.value.status == 401


def test_direct_server_status(server_client):
    assert server_client.server_status()["ready"] is True
    with pytest.raises(NbexecAPIError, match="hub"):
        server_client.start_server()


def test_dropped_run_stream_resumes_from_last_seq(jupyter_server, cutting_proxy):
    # cut the POST stream right after the first cell has ended
    proxy = cutting_proxy(rb'"event":\s*"end"')
    client = jupyter_server.client(proxy.url)
    client.resume_delay = 0.1
    events = []
    model = client.run("slow.ipynb", {"pause": "0.4"}, on_event=events.append)
    assert proxy.cut_count == 1
    assert model["status"] == "completed"
    # every event exactly once, in order, although the first stream was cut mid-way
    assert kinds(events) == ["notebook_start"] + ["start", "end"] * 7 + ["notebook_complete"]
    heads = b"".join(proxy.requests)
    assert b"GET /api/executions/" + model["exec_id"].encode() + b"/progress" in heads
    assert re.search(rb"Last-Event-ID: [1-9]\d*\r\n", heads)
    client.delete_all()


def test_dropped_progress_stream_resumes(jupyter_server, cutting_proxy):
    direct = jupyter_server.client()
    exec_id = direct.run("slow.ipynb", {"pause": "0.3"}, wait=False)["exec_id"]
    # cut the progress stream twice, after the 2nd and (on the resumed stream) a later start
    proxy = cutting_proxy(rb'"progress":\s*"2/7"', cuts=2)
    client = jupyter_server.client(proxy.url)
    client.resume_delay = 0.1
    events = list(client.progress(exec_id))
    assert proxy.cut_count >= 1
    assert [e["seq"] for e in events] == list(range(len(events)))
    assert events[-1]["event"] == "notebook_complete"
    direct.delete_all()


def test_silent_progress_stream_is_resumed_after_the_idle_timeout(jupyter_server, cutting_proxy):
    direct = jupyter_server.client()
    exec_id = direct.run("slow.ipynb", {"pause": "0.5"}, wait=False)["exec_id"]
    # after the 2nd cell the connection goes quiet without closing
    proxy = cutting_proxy(rb'"progress":\s*"2/7"', stall=True)
    client = jupyter_server.client(proxy.url)
    client.resume_delay = 0.1
    client.idle_timeout = 1.5
    started = time.monotonic()
    events = list(client.progress(exec_id))
    assert proxy.cut_count == 1
    assert [e["seq"] for e in events] == list(range(len(events)))
    assert events[-1]["event"] == "notebook_complete"
    assert time.monotonic() - started < 30
    direct.delete_all()
