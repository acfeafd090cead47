"""Forwarding (B.4): every Execution API request through the service, statuses, start/wait."""

from __future__ import annotations

import time

from tests.support.realhub import RealHub
from tests.support.service_calls import Service, executions_path

EXECS = executions_path("alice")


def test_every_request_is_forwarded(
    realhub: RealHub, alice: Service, alice_server: dict, notebooks: dict
) -> None:
    # run: 202 with the notebook_start event
    r = alice.post(EXECS, data={"notebook": notebooks["tiny"], "x": "5"})
    assert r.status_code == 202, r.text
    event = r.json()
    assert event["event"] == "notebook_start"
    exec_id = event["execution"]["exec_id"]
    assert event["execution"]["params"] == {"x": "5"}
    done = alice.wait_done("alice", exec_id)
    assert done["status"] == "completed"
    assert (realhub.home("alice") / done["output_path"]).exists()

    # list, show
    listed = alice.get(EXECS).json()["executions"]
    assert exec_id in [m["exec_id"] for m in listed]
    assert alice.get(f"{EXECS}/{exec_id}").json()["execution"]["exec_id"] == exec_id

    # progress of a finished execution: every event, then the stream ends
    r = alice.get(f"{EXECS}/{exec_id}/progress")
    assert r.status_code == 200
    lines = [line for line in r.text.splitlines() if line]
    assert lines[-1].count("notebook_complete") == 1

    # parameters
    r = alice.get(f"{EXECS}/parameters", params={"notebook": notebooks["tiny"]})
    assert r.status_code == 200, r.text
    assert [p["name"] for p in r.json()["parameters"]] == ["x"]

    # shutdown of a finished one is accepted; delete one; delete all
    r = alice.post(f"{EXECS}/{exec_id}", data={"action": "shutdown"})
    assert r.status_code == 202, r.text
    assert alice.post(f"{EXECS}/{exec_id}", data={"action": "dance"}).status_code == 400
    assert alice.delete(f"{EXECS}/{exec_id}").status_code == 202
    assert alice.get(f"{EXECS}/{exec_id}").status_code == 404
    alice.run("alice", notebooks["tiny"])
    assert alice.delete(EXECS).status_code == 202
    assert alice.get(EXECS).json()["executions"] == []


def test_chunked_shutdown_answers_when_done(
    alice: Service, alice_server: dict, notebooks: dict
) -> None:
    exec_id = alice.run("alice", notebooks["slow"])["exec_id"]
    r = alice.post(
        f"{EXECS}/{exec_id}",
        data={"action": "shutdown"},
        headers={"X-Response-Encoding": "chunked"},
    )
    assert r.status_code == 202, r.text
    model = r.json()["execution"]
    assert model["exec_id"] == exec_id
    assert model["completed_at"] is not None
    assert model["status"].startswith("error")


def test_upstream_errors_pass_through(alice: Service, alice_server: dict, notebooks: dict) -> None:
    cases = [
        ("POST", EXECS, {"x": "1"}, 400),  # no notebook
        ("POST", EXECS, {"notebook": "missing.ipynb"}, 404),
        ("POST", EXECS, {"notebook": "../etc/passwd"}, 400),
        ("POST", EXECS, {"notebook": notebooks["tiny"], "cell_timeout": "-1"}, 400),
        ("GET", f"{EXECS}/no-such-id", None, 404),
        ("DELETE", f"{EXECS}/no-such-id", None, 404),
    ]
    for method, path, data, status in cases:
        r = alice.request(method, path, data=data)
        assert r.status_code == status, (method, path, data, r.text)
        body = r.json()
        assert body["message"], body
        assert "reason" in body


def test_json_bodies_are_forwarded(alice: Service, alice_server: dict, notebooks: dict) -> None:
    r = alice.post(EXECS, json={"notebook": notebooks["tiny"], "x": 7})
    assert r.status_code == 202, r.text
    assert r.json()["execution"]["params"] == {"x": 7}


def test_named_server_forwarding(realhub: RealHub, alice: Service) -> None:
    realhub.put_notebook("alice", "tiny.ipynb")
    path = executions_path("alice", "work")
    try:
        r = alice.post(path + "?start=1&wait=60", data={"notebook": "tiny.ipynb"})
        assert r.status_code == 202, r.text
        assert realhub.server_model("alice", "work")["ready"]
        assert len(alice.get(path).json()["executions"]) == 1
    finally:
        realhub.stop_server("alice", "work")


def test_not_ready_is_409(alice: Service, alice_stopped: None, notebooks: dict) -> None:
    r = alice.post(EXECS, data={"notebook": notebooks["tiny"]})
    assert r.status_code == 409
    assert r.json()["state"] == "stopped"
    assert r.json()["message"]
    assert alice.get(EXECS).status_code == 409


def test_start_and_wait_from_stopped(
    realhub: RealHub, alice: Service, alice_stopped: None, notebooks: dict
) -> None:
    r = alice.post(EXECS + "?start=1&wait=60", data={"notebook": notebooks["tiny"], "x": "3"})
    assert r.status_code == 202, r.text
    assert r.json()["execution"]["params"] == {"x": "3"}
    # start and wait are the service's: never forwarded, other query parameters are
    r = alice.get(f"{EXECS}/query-check?start=1&wait=5&keep=1")
    assert r.status_code == 404
    deadline = time.monotonic() + 10
    while True:  # the server logs a request after answering it
        forwarded = [
            line for line in realhub.log_text().splitlines()
            if "ServerApp" in line and "/user/alice/api/executions/query-check" in line
        ]
        if forwarded or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert forwarded, "the server's log shows no forwarded request"
    assert all("keep=1" in line and "start" not in line and "wait" not in line
               for line in forwarded), forwarded


def test_wait_runs_out_is_504(realhub: RealHub, alice: Service, alice_stopped: None) -> None:
    realhub.start_server("alice", wait=False)
    r = alice.get(EXECS + "?wait=0.2")
    assert r.status_code == 504, r.text
    assert r.json()["state"] == "pending"
    realhub.wait_ready("alice")


def test_spawn_failure_is_502(alice: Service) -> None:
    r = alice.post(executions_path("alice", "broken") + "?start=1&wait=30", data={})
    assert r.status_code == 502, r.text
    assert "start" in r.json()["message"]


def test_pending_without_wait_is_409(realhub: RealHub, alice: Service, alice_stopped: None) -> None:
    realhub.start_server("alice", wait=False)
    r = alice.get(EXECS)
    assert r.status_code == 409
    assert r.json()["state"] == "pending"
    realhub.wait_ready("alice")


def test_bad_wait_is_400(alice: Service) -> None:
    assert alice.get(EXECS + "?wait=soon").status_code == 400


def test_server_gone_behind_the_cache_is_409_stopped(
    realhub: RealHub, alice: Service, alice_server: dict
) -> None:
    assert alice.get(EXECS).status_code == 200  # readiness now cached
    realhub.stop_server("alice")
    r = alice.get(EXECS)
    assert r.status_code == 409, r.text
    assert r.json()["state"] == "stopped"
    # and the cache was dropped: the next answer comes from the hub
    assert alice.get("api/users/alice/server").json()["state"] == "stopped"


def test_contents_and_kernelspecs_read_only(
    realhub: RealHub, alice: Service, alice_server: dict, notebooks: dict
) -> None:
    r = alice.get("api/users/alice/contents")
    assert r.status_code == 200, r.text
    assert "tiny.ipynb" in [item["name"] for item in r.json()["content"]]
    r = alice.get("api/users/alice/contents/tiny.ipynb")
    assert r.status_code == 200 and r.json()["type"] == "notebook"
    r = alice.get("api/users/alice/kernelspecs")
    assert r.status_code == 200 and "python3" in r.json()["kernelspecs"]
    assert alice.delete("api/users/alice/contents/tiny.ipynb").status_code == 405
    assert (realhub.home("alice") / "tiny.ipynb").exists()


def test_fan_out(realhub: RealHub, alice: Service, bob: Service, admin: Service,
                 alice_server: dict, notebooks: dict) -> None:
    exec_id = alice.run("alice", notebooks["tiny"])["exec_id"]
    mine = alice.get("api/executions").json()
    assert exec_id in [m["exec_id"] for m in mine["executions"]]
    assert all(m["user"] == "alice" and m["server_name"] == "" for m in mine["executions"])
    assert mine["partial"] is False
    everyone = admin.get("api/executions").json()
    assert exec_id in [m["exec_id"] for m in everyone["executions"]]
    assert exec_id not in [m["exec_id"] for m in bob.get("api/executions").json()["executions"]]
