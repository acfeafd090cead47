"""Server status (B.3), starting servers and the spawn-progress relay, on a real hub."""

from __future__ import annotations

import time

import requests

from tests.support.realhub import RealHub
from tests.support.service_calls import Service, sse_events


def test_status_stopped(alice: Service, alice_stopped: None) -> None:
    r = alice.get("api/users/alice/server")
    assert r.status_code == 200
    assert r.json() == {
        "user": "alice",
        "server_name": "",
        "state": "stopped",
        "ready": False,
        "pending": None,
        "url": None,
        "started": None,
        "last_activity": None,
        "progress_url": "/services/nbexec/api/users/alice/server/progress",
    }


def test_status_pending_then_ready(realhub: RealHub, alice: Service, alice_stopped: None) -> None:
    r = alice.post("api/users/alice/server")
    assert r.status_code == 202, r.text
    assert r.json()["state"] in ("pending", "ready")
    states = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        model = alice.get("api/users/alice/server").json()
        states.append(model["state"])
        if model["state"] == "ready":
            break
        assert model["pending"] == "spawn"
        time.sleep(0.1)
    assert "pending" in states
    assert states[-1] == "ready"
    assert model["ready"] is True
    assert model["url"] == "/user/alice/"
    assert model["started"] and model["last_activity"]


def test_spawn_progress_relay(realhub: RealHub, alice: Service, alice_stopped: None) -> None:
    assert alice.post("api/users/alice/server").status_code == 202
    r = alice.get(
        "api/users/alice/server/progress", headers={"Accept": "text/event-stream"}, timeout=90
    )
    assert r.status_code == 200
    assert r.headers["Content-Type"].startswith("text/event-stream")
    assert r.headers["Cache-Control"] == "no-cache"
    assert r.headers["X-Accel-Buffering"] == "no"
    events = [data for _, data in sse_events(r.text)]
    assert events, r.text
    assert events[-1]["ready"] is True
    assert events[-1]["progress"] == 100


def test_spawn_progress_of_a_stopped_server_is_409(alice: Service, alice_stopped: None) -> None:
    r = alice.get("api/users/alice/server/progress", headers={"Accept": "text/event-stream"})
    assert r.status_code == 409
    assert r.json()["state"] == "stopped"


def test_named_server_status_and_start(realhub: RealHub, alice: Service) -> None:
    path = "api/users/alice/servers/nb1"
    try:
        model = alice.get(path).json()
        assert model["state"] == "stopped"
        assert model["server_name"] == "nb1"
        assert model["progress_url"] == "/services/nbexec/api/users/alice/servers/nb1/progress"
        r = alice.post(path)
        assert r.status_code == 202, r.text
        realhub.wait_ready("alice", "nb1")
        model = alice.get(path).json()
        assert model["state"] == "ready"
        assert model["url"] == "/user/alice/nb1/"
        # the default server is a different one
        assert alice.get("api/users/alice/server").json()["server_name"] == ""
    finally:
        realhub.stop_server("alice", "nb1")


def test_unknown_user(admin: Service, bob: Service) -> None:
    r = admin.get("api/users/nosuchuser/server")
    assert r.status_code == 404
    assert r.json()["message"]
    # someone without access learns nothing: 403 before any lookup
    assert bob.get("api/users/nosuchuser/server").status_code == 403


def test_health_needs_no_login(realhub: RealHub) -> None:
    r = requests.get(realhub.service_url("api/health"), timeout=10)
    assert r.status_code == 200
    body = r.json()
    assert body["hub"] == "ok"
    assert body["version"]
