"""The `nbexec` command against a real `jupyter server`: output, exit codes, Ctrl-C."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import select
import signal
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest

from nbexec_hub.cli import main

NBEXEC = str(Path(sys.executable).parent / "nbexec")


def nbexec_env(server) -> dict[str, str]:
    """The environment of a script pointed at the server by variables, not flags."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("JUPYTERHUB_")}
    env.update(JUPYTER_SERVER_URL=server.url, JUPYTER_TOKEN=server.token)
    return env


def run_cli(server, *argv: str, timeout: float = 90) -> subprocess.CompletedProcess:
    return subprocess.run([NBEXEC, *argv], env=nbexec_env(server), capture_output=True,
                          text=True, timeout=timeout)


@pytest.fixture
def cli(jupyter_server, server_client, monkeypatch):
    """Call `main()` in-process with the server in the environment."""
    for name, value in nbexec_env(jupyter_server).items():
        monkeypatch.setenv(name, value)
    for name in [k for k in os.environ if k.startswith("JUPYTERHUB_")]:
        monkeypatch.delenv(name)
    return main


def test_run_piped_prints_plain_lines(jupyter_server, server_client):
    result = run_cli(jupyter_server, "run", "greet.ipynb", "-p", "name", "Ada", "-p", "times", "2")
    assert result.returncode == 0, result.stderr
    lines = result.stderr.splitlines()
    assert re.fullmatch(r"started [0-9a-f-]{36}: greet\.ipynb", lines[0])
    # one line per started cell: the parameters, the injected ones, then the notebook's
    assert lines[1:] == [
        '[1/4] name = "world"  # who to greet',
        "[2/4] # Parameters",
        '[3/4] greeting = ("HELLO" if loud else "hello") + ", " + name',
        "[4/4] print(type(times).__name__, type(loud).__name__, repr(name))",
    ]
    assert "\r" not in result.stderr and "\x1b" not in result.stderr  # no bar when piped
    match = re.fullmatch(r"completed ([0-9a-f-]{36}): (greet-Executed\d+\.ipynb)\n",
                         result.stdout)
    assert match, result.stdout
    assert (jupyter_server.root / match.group(2)).exists()


def test_run_on_a_terminal_shows_a_progress_bar(jupyter_server, server_client):
    master, slave = pty.openpty()
    # a terminal of 24 rows and 100 columns (a fresh pty has none)
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    proc = subprocess.Popen([NBEXEC, "run", "slow.ipynb", "-p", "pause", "0.2"],
                            env=nbexec_env(jupyter_server), stdout=subprocess.PIPE,
                            stderr=slave, text=True)
    os.close(slave)
    captured = b""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.5)
        if ready:
            try:
                chunk = os.read(master, 4096)
            except OSError:  # EIO: the child closed its side
                break
            if not chunk:
                break
            captured += chunk
        elif proc.poll() is not None:
            break
    out, _ = proc.communicate(timeout=30)
    os.close(master)
    assert proc.returncode == 0
    text = captured.decode()
    assert "\r" in text  # tqdm redraws in place
    assert "7/7" in text and "cell" in text
    assert "time.sleep(pause)" in text  # the running cell is shown
    assert out.startswith("completed ")


def test_run_json_prints_one_event_per_line(jupyter_server, server_client):
    result = run_cli(jupyter_server, "run", "greet.ipynb", "--json")
    assert result.returncode == 0
    events = [json.loads(line) for line in result.stdout.splitlines()]
    assert events[0]["event"] == "notebook_start"
    assert events[-1]["event"] == "notebook_complete"
    assert len([e for e in events if e["event"] != "output"]) == 8
    assert result.stderr == ""


def test_failed_run_exits_1_with_the_error(jupyter_server, server_client):
    result = run_cli(jupyter_server, "run", "fail.ipynb")
    assert result.returncode == 1
    assert "boom from the nbexec client tests" in result.stderr
    assert "ValueError" in result.stderr


def test_params_file(jupyter_server, server_client, tmp_path, cli, capsys):
    f = tmp_path / "params.yaml"
    f.write_text("name: Yaml\nloud: true\ntimes: 1\n")
    assert cli(["run", "greet.ipynb", "--params-file", str(f), "--output", "from-yaml.ipynb",
                "--json"]) == 0
    events = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    outputs = json.dumps([e["cell"]["outputs"] for e in events if e["event"] == "end"])
    assert "HELLO, Yaml" in outputs and "int bool" in outputs


def test_no_wait_list_show_progress_delete(cli, capsys):
    assert cli(["run", "greet.ipynb", "--no-wait"]) == 0
    exec_id = capsys.readouterr().out.strip()
    assert re.fullmatch(r"[0-9a-f-]{36}", exec_id)
    assert cli(["progress", exec_id]) == 0
    assert capsys.readouterr().out.startswith(f"completed {exec_id}: greet-Executed")
    assert cli(["list"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["ID", "STATUS", "PROGRESS", "PATH", "OUTPUT"]
    assert any(line.startswith(exec_id) and "completed" in line for line in out[1:])
    assert cli(["show", exec_id]) == 0
    assert re.search(r"^status\s+completed$", capsys.readouterr().out, re.M)
    assert cli(["show", exec_id, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["progress"] == "3/3"
    assert cli(["delete", exec_id]) == 0
    assert cli(["show", exec_id]) == 4
    assert "404" in capsys.readouterr().err


def test_shutdown_and_delete_all(cli, server_client, capsys):
    exec_id = server_client.run("slow.ipynb", {"pause": "5"}, wait=False)["exec_id"]
    for event in server_client.progress(exec_id):
        if event["event"] == "start":
            break
    assert cli(["shutdown", exec_id, "--json"]) == 0
    model = json.loads(capsys.readouterr().out)
    assert model["exec_id"] == exec_id and model["completed_at"] is not None
    assert cli(["delete", "--all"]) == 0
    assert cli(["list", "--json"]) == 0
    assert json.loads(capsys.readouterr().out.splitlines()[-1]) == {"executions": []}


def test_status_and_parameters(cli, capsys):
    assert cli(["status"]) == 0
    assert capsys.readouterr().out.strip() == "ready"
    assert cli(["parameters", "greet.ipynb"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["NAME", "TYPE", "DEFAULT", "HELP"]
    assert re.match(r"times\s+int\s+1\s+how often", out[2])


def test_http_errors_exit_4_with_the_server_message(jupyter_server, server_client):
    result = run_cli(jupyter_server, "run", "missing.ipynb")
    assert result.returncode == 4
    assert result.stderr.startswith("nbexec: 404: ") and "missing.ipynb" in result.stderr
    result = run_cli(jupyter_server, "run", "greet.ipynb", "--overwrite")
    assert result.returncode == 4 and "400" in result.stderr
    result = run_cli(jupyter_server, "list", "--token", "wrong")
    assert result.returncode == 4 and "401" in result.stderr


def _start_and_interrupt(server, *extra: str, stdin=None):
    proc = subprocess.Popen([NBEXEC, "run", "slow.ipynb", "-p", "pause", "3", *extra],
                            env=nbexec_env(server), stdin=stdin, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    exec_id = None
    for line in proc.stderr:
        if line.startswith("started "):
            exec_id = line.split()[1].rstrip(":")
        if line.startswith("[4/7]"):  # the first time.sleep cell
            break
    proc.send_signal(signal.SIGINT)
    return proc, exec_id


@pytest.mark.parametrize("choice", ["shutdown", "leave"])
def test_ctrl_c_shuts_down_or_leaves_running(jupyter_server, server_client, choice):
    proc, exec_id = _start_and_interrupt(jupyter_server, "--on-interrupt", choice)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130
    model = server_client.get(exec_id)
    if choice == "shutdown":
        assert f"shut down {exec_id}" in err
        assert model["completed_at"] is not None and model["status"] != "completed"
    else:
        assert f"nbexec progress {exec_id}" in err
        assert model["status"] == "executing"
        server_client.shutdown(exec_id)


def test_ctrl_c_asks_on_a_terminal(jupyter_server, server_client):
    master, slave = pty.openpty()
    proc, exec_id = _start_and_interrupt(jupyter_server, stdin=slave)
    os.close(slave)
    os.write(master, b"y\n")
    out, err = proc.communicate(timeout=60)
    os.close(master)
    assert "Shut the execution down?" in out
    assert proc.returncode == 130
    assert f"shut down {exec_id}" in err
    assert server_client.get(exec_id)["completed_at"] is not None
