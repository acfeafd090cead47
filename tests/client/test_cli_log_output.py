"""Live output in the client and the command: ``on_event`` and ``--log-output`` (issue 14)."""

from __future__ import annotations

import io
import re
import subprocess
import time

import nbformat
import pytest

from nbexec_hub.cli.display import ProgressView, output_line

from .test_cli_server import NBEXEC, nbexec_env, run_cli

TICKS = "".join(f"tick {i}\n" for i in range(5))


@pytest.fixture(scope="module")
def chatty(jupyter_server) -> str:
    """A notebook printing a line every 0.4 s, then writing to stderr, displaying, failing."""
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell(
            "import time\nfor i in range(5):\n    print('tick', i, flush=True)\n"
            "    time.sleep(0.4)"
        ),
        nbformat.v4.new_code_cell(
            "import sys\nfrom IPython.display import HTML, display\n"
            "print('to stderr', file=sys.stderr)\ndisplay(HTML('<i>shown</i>'))\n6 * 7"
        ),
        nbformat.v4.new_code_cell("raise ValueError('boom')"),
    ])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    nbformat.write(nb, str(jupyter_server.root / "chatty.ipynb"))
    return "chatty.ipynb"


def check_printed(stdout: str, stderr: str) -> None:
    assert stdout.startswith(TICKS), stdout
    rest = stdout[len(TICKS):].splitlines()
    assert re.fullmatch(r"\[display_data: (text/plain, text/html|text/html, text/plain)\]",
                        rest[0])
    assert rest[1:] == ["[execute_result: text/plain]"]
    assert "to stderr\n" in stderr
    assert "[error: ValueError: boom]\n" in stderr


def test_run_log_output_on_a_pipe_prints_as_it_comes(jupyter_server, server_client, chatty):
    proc = subprocess.Popen([NBEXEC, "run", chatty, "--log-output"],
                            env=nbexec_env(jupyter_server), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    first_tick = None
    for line in proc.stdout:
        if line == "tick 0\n":
            first_tick = time.monotonic()
            break
    rest, stderr = proc.communicate(timeout=90)
    ended = time.monotonic()
    assert first_tick is not None and ended - first_tick > 1.0  # not all at the end
    assert proc.returncode == 1  # the last cell fails
    check_printed("tick 0\n" + rest, stderr)
    assert stderr.index("[1/3]") < stderr.index("[2/3]") < stderr.index("to stderr")
    assert "execution" in stderr and "failed" in stderr


def test_progress_log_output_replays_a_finished_run(jupyter_server, server_client, chatty):
    events: list[dict] = []
    model = server_client.run(chatty, on_event=events.append)
    assert model["status"] == "error: ValueError: boom"
    outputs = [e["output"] for e in events if e["event"] == "output"]  # on_event gets them
    assert "".join(o["text"] for o in outputs if o.get("name") == "stdout") == TICKS
    assert [o["output_type"] for o in outputs][-3:] == [
        "display_data", "execute_result", "error"
    ]
    result = run_cli(jupyter_server, "progress", model["exec_id"], "--log-output")
    assert result.returncode == 1
    check_printed(result.stdout, result.stderr)
    quiet = run_cli(jupyter_server, "progress", model["exec_id"])
    assert "tick" not in quiet.stdout and "to stderr" not in quiet.stderr


def test_open_lines_are_ended_before_other_lines():
    out, err = io.StringIO(), io.StringIO()
    view = ProgressView("lines", err=err, out=out, log_output=True)
    for output in [
        {"output_type": "stream", "name": "stdout", "text": "50%"},
        {"output_type": "stream", "name": "stdout", "text": " 100%"},
        {"output_type": "display_data", "data": {"image/png": "iVBOR"}, "metadata": {}},
        {"output_type": "stream", "name": "stderr", "text": "warning"},
        {"output_type": "clear_output"},
        {"output_type": "stream", "name": "stdout", "text": "no newline"},
    ]:
        view({"event": "output", "progress": "1/1", "output": output})
    view({"event": "start", "progress": "2/2", "cell": {"source": "x = 1"}})
    view.close()
    assert out.getvalue() == "50% 100%\n[display_data: image/png]\n[clear_output]\nno newline\n"
    assert err.getvalue() == "warning\n[2/2] x = 1\n"
    assert output_line({"output_type": "update_display_data", "data": {"text/html": ""}}) == (
        "[update_display_data: text/html]"
    )
