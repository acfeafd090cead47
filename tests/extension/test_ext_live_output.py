"""Live output (A.5): ``output`` events while a cell runs, coalesced, replayable."""

from __future__ import annotations

import asyncio
import json
import time

import nbformat

from nbexec_hub.extension.live_output import OutputEvents
from tests.support.ext_helpers import read_json, stream_text

CHUNKED = {"X-Response-Encoding": "chunked"}


def write_notebook(root, name: str, *sources: str) -> str:
    """A notebook of these code cells in the server's root; its path."""
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(s) for s in sources])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    nbformat.write(nb, str(root / name))
    return name


async def run_arrivals(jp_fetch, notebook: str) -> list[tuple[float, dict]]:
    """Run over a chunked POST: each event with the moment it reached this reader."""
    arrivals: list[tuple[float, dict]] = []
    partial = bytearray()

    def on_chunk(chunk: bytes) -> None:
        partial.extend(chunk)
        *lines, rest = bytes(partial).split(b"\n")
        partial[:] = rest
        arrivals.extend((time.monotonic(), json.loads(line)) for line in lines if line)

    response = await jp_fetch("api", "executions", method="POST", body=f"notebook={notebook}",
                              headers=CHUNKED, streaming_callback=on_chunk)
    assert response.code == 202
    return arrivals


def outputs_of(events: list[dict]) -> list[dict]:
    return [e["output"] for e in events if e["event"] == "output"]


def replay(outputs: list[dict]) -> list[dict]:
    """What a reader rebuilds from output events (streams joined per run of one stream)."""
    shown: list[dict] = []
    for out in outputs:
        kind = out["output_type"]
        if kind == "clear_output":
            shown.clear()
        elif kind == "stream" and shown and shown[-1]["output_type"] == "stream" \
                and shown[-1]["name"] == out["name"]:
            shown[-1] = dict(shown[-1], text=shown[-1]["text"] + out["text"])
        elif kind != "update_display_data":
            shown.append(out)
    return shown


async def test_lines_arrive_while_the_cell_runs(jp_fetch, jp_root_dir):
    name = write_notebook(
        jp_root_dir, "ticks.ipynb",
        "import time\nfor i in range(5):\n    print('tick', i, flush=True)\n    time.sleep(0.4)",
    )
    arrivals = await run_arrivals(jp_fetch, name)
    events = [e for _, e in arrivals]
    assert events[-1]["event"] == "notebook_complete", events[-1]
    first_output = next(t for t, e in arrivals if e["event"] == "output")
    cell_end = next(t for t, e in arrivals if e["event"] == "end")
    assert cell_end - first_output > 1.0
    outputs = outputs_of(events)
    assert all(e["progress"] == "1/1" for e in events if e["event"] == "output")
    assert len(outputs) >= 3  # a line at a time, not all at the end
    assert {o["name"] for o in outputs} == {"stdout"}
    text = "".join(o["text"] for o in outputs)
    assert text == "".join(f"tick {i}\n" for i in range(5))
    end = next(e for e in events if e["event"] == "end")
    assert stream_text(end["cell"]) == text  # the end event still carries the whole cell
    kinds = [e["event"] for e in events]
    assert kinds.index("start") < kinds.index("output") < kinds.index("end")


async def test_a_burst_of_lines_arrives_whole_in_few_events(jp_fetch, run, jp_root_dir):
    name = write_notebook(
        jp_root_dir, "burst.ipynb",
        "import sys\nfor i in range(20000):\n    print(i)\n"
        "for i in range(100):\n    print('err', i, file=sys.stderr)",
    )
    events = await run(chunked=True, notebook=name)
    assert events[-1]["event"] == "notebook_complete", events[-1]
    outputs = outputs_of(events)
    stdout = "".join(o["text"] for o in outputs if o.get("name") == "stdout")
    stderr = "".join(o["text"] for o in outputs if o.get("name") == "stderr")
    assert stdout == "".join(f"{i}\n" for i in range(20000))
    assert stderr == "".join(f"err {i}\n" for i in range(100))
    assert len(outputs) < 60
    out = read_json(jp_root_dir / "burst-Executed1.ipynb")
    assert stream_text(out.cells[0]) == stdout + stderr


async def test_displays_updates_clears_and_errors(jp_fetch, run, jp_root_dir):
    name = write_notebook(
        jp_root_dir, "displays.ipynb",
        "import time\nfrom IPython.display import display, clear_output, HTML\n"
        "print('before clear', flush=True)\ntime.sleep(0.3)\nclear_output()\n"
        "handle = display(HTML('<b>one</b>'), display_id=True)\ntime.sleep(0.3)\n"
        "handle.update(HTML('<b>two</b>'))\ntime.sleep(0.3)\nprint('after', flush=True)\n"
        "clear_output(wait=True)\ndisplay('replaced')\n6 * 7",
        "raise ValueError('boom')",
    )
    events = await run(chunked=True, notebook=name)
    assert events[-1]["event"] == "notebook_error"
    first = [e for e in events if e["event"] == "output" and e["progress"] == "1/2"]
    kinds = [e["output"]["output_type"] for e in first]
    assert kinds[:4] == ["stream", "clear_output", "display_data", "update_display_data"]
    display_event, update_event = first[2], first[3]
    assert display_event["output"]["data"]["text/html"] == "<b>one</b>"
    assert update_event["output"]["data"]["text/html"] == "<b>two</b>"
    assert display_event["display_id"] == update_event["display_id"]
    assert "clear_output" in kinds[4:]  # the wait=True clear, before the next output
    shown = replay([e["output"] for e in first])
    assert [o["output_type"] for o in shown] == ["display_data", "execute_result"]
    assert shown[0]["data"]["text/plain"] == "'replaced'"
    assert shown[1]["data"]["text/plain"] == "42" and shown[1]["execution_count"] == 1
    [end1, end2] = [e for e in events if e["event"] == "end"]
    assert shown == end1["cell"]["outputs"]  # live outputs are the notebook's
    [error] = [e["output"] for e in events if e["event"] == "output" and e["progress"] == "2/2"]
    assert error["output_type"] == "error" and error["ename"] == "ValueError"
    assert end2["cell"]["outputs"] == [error]


async def test_an_image_output(run, jp_root_dir):
    png = ("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR4nGNgYPgPAAEDAQAIicLsAAAA"
           "AElFTkSuQmCC")
    name = write_notebook(
        jp_root_dir, "image.ipynb",
        "import base64\nfrom IPython.display import Image, display\n"
        f"display(Image(data=base64.b64decode('{png}')))",
    )
    events = await run(chunked=True, notebook=name)
    [image] = outputs_of(events)
    assert image["output_type"] == "display_data"
    assert image["data"]["image/png"].strip() == png
    assert "display_id" not in next(e for e in events if e["event"] == "output")


async def test_replay_after_the_fact_gives_the_same_outputs(jp_fetch, run, jp_root_dir):
    name = write_notebook(
        jp_root_dir, "replay.ipynb",
        "import time\nfor i in range(3):\n    print(i, flush=True)\n    time.sleep(0.2)",
        "from IPython.display import display\ndisplay({'text/plain': 'raw'}, raw=True)\n'done'",
    )
    live = await run(chunked=True, notebook=name)
    exec_id = live[0]["execution"]["exec_id"]
    for headers in ({}, {"Accept": "text/event-stream"}):
        response = await jp_fetch("api", "executions", exec_id, "progress", headers=headers)
        body = response.body.decode()
        if headers:
            lines = [line[6:] for line in body.splitlines() if line.startswith("data: ")]
        else:
            lines = body.splitlines()
        replayed = [json.loads(line) for line in lines]
        assert [dict(e, seq=None) for e in replayed] == [dict(e, seq=None) for e in live]
        assert len(outputs_of(replayed)) >= 4


async def test_coalescing_rules_without_a_kernel():
    sent: list[tuple[dict, str | None]] = []
    events = OutputEvents(lambda output, display_id: sent.append((output, display_id)),
                          interval=0.05)

    def msg(msg_type, **content):
        return {"msg_type": msg_type, "content": content}

    for i in range(1000):
        events.output({"output_type": "stream", "name": "stdout", "text": f"{i}\n"})
        events.output({"output_type": "stream", "name": "stderr", "text": "e"})
    await asyncio.sleep(0.01)  # the first send goes out at once: nothing was sent before
    assert [(o["name"], len(o["text"])) for o, _ in sent] == [("stdout", 3890), ("stderr", 1000)]
    sent.clear()
    events.output({"output_type": "stream", "name": "stdout", "text": "gone\n"})
    events.message(msg("clear_output", wait=False), None)
    events.output({"output_type": "display_data", "data": {"text/plain": "x"}, "metadata": {}},
                  "d1")
    events.message(msg("update_display_data", data={"text/plain": "y"}, metadata={},
                       transient={"display_id": "d1"}), None)
    events.message(msg("update_display_data", data={"text/plain": "z"}, metadata={},
                       transient={"display_id": "d1"}), None)
    assert sent == []  # within the interval: waiting
    await asyncio.sleep(0.1)
    assert [o for o, _ in sent] == [
        {"output_type": "clear_output"},
        {"output_type": "display_data", "data": {"text/plain": "z"}, "metadata": {}},
        {"output_type": "update_display_data", "data": {"text/plain": "z"}, "metadata": {}},
    ]
    assert [d for _, d in sent] == [None, "d1", "d1"]
    sent.clear()
    events.message(msg("clear_output", wait=True), None)
    events.close()
    assert sent == []  # a clear waiting for a next output that never came clears nothing
    events.output({"output_type": "stream", "name": "stdout", "text": "late"})
    assert sent == []


async def test_a_silent_cell_sends_no_output_events(run, jp_root_dir):
    name = write_notebook(jp_root_dir, "silent.ipynb", "x = 1", "y = x + 1")
    events = await run(chunked=True, notebook=name)
    assert [e["event"] for e in events] == [
        "notebook_start", "start", "end", "start", "end", "notebook_complete"
    ]
