"""The hub restarts while an execution runs: the execution completes, the service recovers."""

from __future__ import annotations

import requests

from tests.support.realhub import slow_notebook
from tests.support.service_calls import Service, executions_path


def test_hub_restart_during_an_execution(realhub_factory) -> None:  # type: ignore[no-untyped-def]
    hub = realhub_factory(extra_config="c.JupyterHub.cleanup_servers = False")
    alice = Service(hub, hub.create_token("alice"))
    hub.put_notebook("alice", "long.ipynb", slow_notebook(cells=16, seconds=1.0))
    r = alice.post(executions_path("alice") + "?start=1&wait=60", data={"notebook": "long.ipynb"})
    assert r.status_code == 202, r.text
    exec_id = r.json()["execution"]["exec_id"]
    server_pid = hub.server_model("alice")  # the server exists before the restart
    assert server_pid and server_pid["ready"]

    running = alice.get(f"{executions_path('alice')}/{exec_id}").json()["execution"]
    assert running["completed_at"] is None  # still running when the hub goes down

    hub.restart(down_seconds=1)

    # a new service process answers, the server survived, the execution completed
    assert requests.get(hub.service_url("api/health"), timeout=10).json()["hub"] == "ok"
    done = alice.wait_done("alice", exec_id, timeout=60)
    assert done["status"] == "completed", done
    assert done["progress"] == "17/17"
    assert alice.get("api/users/alice/server").json()["state"] == "ready"
    # and new executions go through
    again = alice.run("alice", "long.ipynb")
    assert again["exec_id"] != exec_id
