"""The client and the `nbexec` command through a real JupyterHub and the nbexec service.

Uses B's shared `realhub` plugin: a real jupyterhub, configurable-http-proxy, the service
and single-user servers with the extension, users alice, bob and admin.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest

from nbexec_hub.cli import main
from nbexec_hub.client import NbexecAPIError, NbexecClient

from .conftest import FILES, CuttingProxy

NBEXEC = str(Path(sys.executable).parent / "nbexec")


def single_user_env(hub, user: str, token: str) -> dict[str, str]:
    """The variables a user's server has, as far as `nbexec` reads them."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("JUPYTERHUB_", "JUPYTER_SERVER_URL", "NBEXEC_"))}
    # as the spawner sets them: the hub's own API address, and the public URL of the proxy
    env.update(JUPYTERHUB_API_URL=f"http://127.0.0.1:{hub.hub_port}/hub/api",
               JUPYTERHUB_PUBLIC_HUB_URL=f"{hub.url}/hub/", JUPYTERHUB_API_TOKEN=token,
               JUPYTERHUB_USER=user, JUPYTERHUB_SERVER_NAME="")
    return env


@pytest.fixture
def alice(realhub, alice_server, alice_token, monkeypatch):
    """Alice's ready server with the test notebooks; `nbexec` set up as inside her server."""
    for nb in FILES.glob("*.ipynb"):
        realhub.put_notebook("alice", nb.name, nb)
    for name in [k for k in os.environ if k.startswith(("JUPYTERHUB_", "JUPYTER_SERVER_URL",
                                                        "NBEXEC_"))]:
        monkeypatch.delenv(name)
    for name, value in single_user_env(realhub, "alice", alice_token).items():
        monkeypatch.setenv(name, value)
    client = NbexecClient.for_hub(realhub.url, alice_token, "alice")
    yield client
    client.delete_all()


def test_run_through_the_hub_with_progress(alice, realhub):
    events = []
    model = alice.run("greet.ipynb", {"name": "Hub", "times": "1"}, on_event=events.append)
    assert model["status"] == "completed"
    assert [e["event"] for e in events if e["event"] != "output"] == (
        ["notebook_start"] + ["start", "end"] * 4 + ["notebook_complete"])
    assert (realhub.home("alice") / model["output_path"]).exists()
    assert alice.get(model["exec_id"])["status"] == "completed"
    assert alice.parameters("greet.ipynb")["parameters"][0]["name"] == "name"
    assert alice.server_status()["state"] == "ready"


def test_cli_inside_a_single_user_environment(alice, capsys):
    # nothing but the JUPYTERHUB_* variables a user's server has
    assert main(["run", "greet.ipynb", "-p", "name", "Env"]) == 0
    captured = capsys.readouterr()
    match = re.fullmatch(r"completed ([0-9a-f-]{36}): (greet-Executed\d+\.ipynb)\n",
                         captured.out)
    assert match, captured
    exec_id = match.group(1)
    assert "[3/4] greeting" in captured.err
    assert main(["status"]) == 0
    assert capsys.readouterr().out.strip() == "ready"
    assert main(["list"]) == 0
    assert exec_id in capsys.readouterr().out
    assert main(["show", exec_id]) == 0
    assert re.search(r"^status\s+completed$", capsys.readouterr().out, re.M)
    assert main(["progress", exec_id]) == 0
    assert capsys.readouterr().out.startswith(f"completed {exec_id}")
    assert main(["delete", exec_id]) == 0
    assert main(["show", exec_id]) == 4
    assert "404" in capsys.readouterr().err


def test_cli_piped_through_the_hub(alice, realhub, alice_token):
    result = subprocess.run([NBEXEC, "run", "fail.ipynb"],
                            env=single_user_env(realhub, "alice", alice_token),
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert "[2/3] raise ValueError" in result.stderr
    assert "boom from the nbexec client tests" in result.stderr
    assert "\r" not in result.stderr


def test_shutdown_no_wait_and_delete_all(alice, capsys):
    assert main(["run", "slow.ipynb", "-p", "pause", "5", "--no-wait"]) == 0
    exec_id = capsys.readouterr().out.strip()
    for event in alice.progress(exec_id):
        if event["event"] == "start" and "sleep" in event["cell"]["source"]:
            break
    assert main(["shutdown", exec_id]) == 0
    assert capsys.readouterr().out.startswith(f"shut down {exec_id}: ")
    assert alice.get(exec_id)["completed_at"] is not None
    assert main(["delete", "--all"]) == 0
    assert alice.list() == []


def test_dropped_stream_through_the_hub_resumes(alice, realhub, alice_token):
    port = int(realhub.url.rsplit(":", 1)[1])
    proxy = CuttingProxy(port, rb'"event":\s*"end"')
    try:
        client = NbexecClient.for_hub(proxy.url, alice_token, "alice", resume_delay=0.1)
        events = []
        model = client.run("slow.ipynb", {"pause": "0.3"}, on_event=events.append)
    finally:
        proxy.close()
    assert proxy.cut_count == 1
    assert model["status"] == "completed"
    assert [e["event"] for e in events if e["event"] != "output"] == (
        ["notebook_start"] + ["start", "end"] * 7 + ["notebook_complete"])
    heads = b"".join(proxy.requests)
    assert re.search(rb"GET /services/nbexec/api/users/alice/executions/[0-9a-f-]{36}/progress",
                     heads)
    assert re.search(rb"Last-Event-ID: [1-9]\d*\r\n", heads)


def test_errors_through_the_hub(alice, realhub, bob_token, capsys):
    # another user's server: the service's 403 and message
    assert main(["list", "--token", bob_token]) == 4
    err = capsys.readouterr().err
    assert err.startswith("nbexec: 403: ")
    assert main(["list", "--token", "not-a-token"]) == 4
    assert capsys.readouterr().err.startswith("nbexec: 401: ")
    with pytest.raises(NbexecAPIError) as exc:
        alice.run("missing.ipynb")
    assert exc.value.status == 404 and "missing.ipynb" in exc.value.message


def test_stopped_server_status_409_and_start(realhub, bob_token, monkeypatch, capsys):
    realhub.stop_server("bob")
    realhub.put_notebook("bob", "greet.ipynb", FILES / "greet.ipynb")
    for name, value in single_user_env(realhub, "bob", bob_token).items():
        monkeypatch.setenv(name, value)
    try:
        assert main(["status"]) == 3
        assert capsys.readouterr().out.strip() == "stopped"
        assert main(["run", "greet.ipynb"]) == 3  # 409: not ready, and no --start
        err = capsys.readouterr().err
        assert err.startswith("nbexec: 409: ") and "add --start" in err
        assert main(["run", "greet.ipynb", "--start", "--json"]) == 0
        assert '"notebook_complete"' in capsys.readouterr().out.splitlines()[-1]
        assert main(["status", "--json"]) == 0
        assert '"ready": true' in capsys.readouterr().out
        # the same from Python: start_server, then poll server_status
        realhub.stop_server("bob")
        client = NbexecClient.for_hub(realhub.url, bob_token, "bob")
        assert client.server_status()["state"] == "stopped"
        assert client.start_server()["state"] in ("pending", "ready")
        deadline = time.monotonic() + 60
        while client.server_status()["state"] != "ready":
            assert time.monotonic() < deadline
            time.sleep(0.5)
        assert isinstance(client.list(), list)  # forwarded now that it is ready
    finally:
        realhub.stop_server("bob")


def test_list_every_server_as_admin(alice, realhub, admin_token, capsys):
    model = alice.run("greet.ipynb", wait=False)
    alice.follow(model["exec_id"])
    assert main(["list", "--all-servers", "--token", admin_token, "--user", "admin"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split()[:3] == ["USER", "SERVER", "ID"]
    assert any(line.startswith("alice") and model["exec_id"] in line for line in out[1:])


#: what the servers' own tokens need so that `nbexec` works inside them
SERVER_TOKEN_SCOPES = (
    'c.Spawner.server_token_scopes = ["users:activity!user", "access:servers!server", '
    '"access:services!service=nbexec"]'
)


def run_nbexec_inside(hub, client: NbexecClient) -> str:
    """Run a notebook on alice's server that calls `nbexec` with that server's environment;
    what it printed."""
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(
        "import os, subprocess, sys\n"
        "nbexec = os.path.join(os.path.dirname(sys.executable), 'nbexec')\n"
        "for argv in (['status'], ['list', '--json']):\n"
        "    r = subprocess.run([nbexec, *argv], capture_output=True, text=True, timeout=60)\n"
        "    print(argv[0], r.returncode, r.stdout.strip(), r.stderr.strip())\n"
    )]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    hub.put_notebook("alice", "nested.ipynb", nb)
    events = []
    model = client.run("nested.ipynb", on_event=events.append)
    assert model["status"] == "completed"
    return "".join(o.get("text", "") for o in events[-2]["cell"]["outputs"])


def test_nbexec_inside_a_users_server_needs_no_settings(alice, realhub):
    # with the shipped hub_config: the server's own JUPYTERHUB_API_TOKEN must reach the service
    text = run_nbexec_inside(realhub, alice)
    assert text.startswith("status 0 ready"), text
    assert re.search(r"^list 0 \{\"executions\": \[", text, re.M), text


def test_nbexec_inside_a_server_whose_token_may_use_the_service(realhub_factory):
    hub = realhub_factory(extra_config=SERVER_TOKEN_SCOPES)
    hub.start_server("alice")
    client = NbexecClient.for_hub(hub.url, hub.create_token("alice"), "alice")
    text = run_nbexec_inside(hub, client)
    assert text.startswith("status 0 ready"), text
    assert re.search(r"^list 0 \{\"executions\": \[", text, re.M), text


def test_named_server(alice, realhub, capsys):
    realhub.stop_server("alice", "gpu")
    try:
        assert main(["status", "--server", "gpu"]) == 3
        capsys.readouterr()
        assert main(["run", "greet.ipynb", "--server", "gpu", "--start", "--no-wait"]) == 0
        exec_id = capsys.readouterr().out.strip()
        assert realhub.server_model("alice", "gpu")["ready"]
        assert main(["progress", exec_id, "--server", "gpu"]) == 0
        assert main(["list", "--server", "gpu", "--json"]) == 0
        out = capsys.readouterr().out.splitlines()
        assert [m["exec_id"] for m in json.loads(out[-1])["executions"]] == [exec_id]
        # the default server does not know it
        assert main(["show", exec_id]) == 4
    finally:
        realhub.stop_server("alice", "gpu")
