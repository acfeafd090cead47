"""How runs end and what they write: errors, exits, tags, timeouts, dead kernels, naming."""

from __future__ import annotations

import asyncio
import json
import os
import signal

from tests.support.ext_helpers import (
    kernel_pid,
    read_json,
    settle,
    stream_text,
    wait_done,
    wait_for_event,
)


async def test_parameters_are_converted_to_the_declared_types(run, jp_root_dir):
    events = await run(
        chunked=True, notebook="params.ipynb", output_path="typed.ipynb",
        n="42", x="2.5", flag="Yes", text="'; import os #", items="[1, 'two']",
        mapping='{"a": 1}', pair="(3, 4)", nothing="7", when="later", extra_value="8",
    )
    assert events[-1]["event"] == "notebook_complete", events[-1]
    out = read_json(jp_root_dir / "typed.ipynb")
    printed = json.loads(stream_text(out.cells[2]))
    assert printed == {
        "n": ["int", "42"], "x": ["float", "2.5"], "flag": ["bool", "True"],
        "text": ["str", repr("'; import os #")], "items": ["list", "[1, 'two']"],
        "mapping": ["dict", "{'a': 1}"], "pair": ["tuple", "(3, 4)"],
        "nothing": ["int", "7"], "when": ["str", "'later'"],
    }
    extra = json.loads(stream_text(out.cells[3]))
    assert extra == {"extra_value": ["str", "'8'"]}  # undeclared: injected as a string
    assert out.cells[1].metadata.tags == ["injected-parameters"]
    assert events[-1]["execution"]["params"]["n"] == "42"  # the model keeps what was sent


async def test_hostile_values_stay_strings(run, jp_root_dir):
    hostile = "\"'; import os; os.system('touch pwned') #\n\\"
    events = await run(chunked=True, notebook="params.ipynb", output_path="h.ipynb",
                       text=hostile, when=hostile, nothing=hostile)
    assert events[-1]["event"] == "notebook_complete", events[-1]
    printed = json.loads(stream_text(read_json(jp_root_dir / "h.ipynb").cells[2]))
    assert printed["text"] == ["str", repr(hostile)]
    assert printed["when"] == ["str", repr(hostile)]
    assert printed["nothing"] == ["str", repr(hostile)]
    assert not (jp_root_dir / "pwned").exists()


async def test_a_failing_cell_ends_the_run_and_the_output_shows_the_error(run, jp_root_dir):
    events = await run(chunked=True, notebook="error.ipynb")
    assert [e["event"] for e in events] == [
        "notebook_start", "start", "output", "end", "start", "output", "end", "notebook_error"
    ]
    final = events[-1]
    assert list(final) == ["event", "timestamp", "output_path", "error", "execution"]
    assert final["output_path"] == "error-Executed1.ipynb"
    assert final["error"] == (
        "An error occurred while executing the following cell:\n"
        "------------------\nraise ValueError('boom')\n------------------\n\nValueError: boom\n"
    )
    assert final["execution"]["status"] == "error: ValueError: boom"
    assert final["execution"]["progress"] == "2/3"
    out = read_json(jp_root_dir / "error-Executed1.ipynb")
    assert stream_text(out.cells[0]) == "first cell ran\n"
    assert out.cells[1].outputs[0].ename == "ValueError"
    assert "nbexec" in out.cells[1].metadata and out.cells[2].outputs == []
    assert "nbexec" not in out.cells[2].metadata


async def test_sys_exit_zero_completes_and_other_codes_fail(run, jp_root_dir):
    events = await run(chunked=True, notebook="exit.ipynb")
    assert events[-1]["event"] == "notebook_complete"
    assert events[-1]["execution"]["progress"] == "2/3"
    out = read_json(jp_root_dir / "exit-Executed1.ipynb")
    assert out.cells[2].outputs == [] and "nbexec" not in out.cells[2].metadata
    events = await run(chunked=True, notebook="exit_error.ipynb")
    assert events[-1]["event"] == "notebook_error"
    assert events[-1]["execution"]["status"] == "error: SystemExit: 3"


async def test_tags_raises_exception_and_skip_execution(run, jp_root_dir):
    events = await run(chunked=True, notebook="tags.ipynb")
    assert events[-1]["event"] == "notebook_complete", events[-1]
    sources = [e["cell"]["source"] for e in events if e["event"] == "start"]
    assert sources == ["raise RuntimeError('allowed')", "import os\nprint(os.getcwd())"]
    assert events[-1]["execution"]["progress"] == "2/2"
    out = read_json(jp_root_dir / "tags-Executed1.ipynb")
    assert out.cells[1].outputs[0].ename == "RuntimeError"
    assert out.cells[2].outputs == [] and "nbexec" not in out.cells[2].metadata
    assert stream_text(out.cells[4]).strip() == str(jp_root_dir)


async def test_cell_timeout_ends_the_whole_run(run, manager, jp_root_dir):
    started = asyncio.get_running_loop().time()
    events = await run(chunked=True, notebook="slow.ipynb", cell_timeout="1")
    assert asyncio.get_running_loop().time() - started < 15
    final = events[-1]
    assert final["event"] == "notebook_error"
    assert "timed out" in final["execution"]["status"] and "timed out" in final["error"]
    assert "time.sleep(60)" in final["error"]
    assert final["execution"]["cell_timeout"] == 1
    out = read_json(jp_root_dir / "slow-Executed1.ipynb")
    assert stream_text(out.cells[0]) == "started\n"
    assert out.cells[1].outputs[-1].ename == "CellTimeoutError"
    assert out.cells[2].outputs == []
    await settle(manager)
    assert manager.kernels.mkm.list_kernel_ids() == []


async def test_a_kernel_killed_mid_run_ends_the_execution(run, manager, jp_serverapp, jp_root_dir):
    model = (await run(notebook="slow.ipynb"))["execution"]
    ex = manager.get(model["exec_id"])
    await wait_for_event(ex, "start", lambda e: "sleep" in e["cell"]["source"])
    os.kill(kernel_pid(jp_serverapp, ex.kernel_id), signal.SIGKILL)
    await wait_done(ex, timeout=30)
    assert ex.status == "error: the kernel died while the cell was running"
    final = ex.events_since(0)[-1][1]
    assert final["event"] == "notebook_error" and "DeadKernelError" in final["error"]
    out = read_json(jp_root_dir / "slow-Executed1.ipynb")
    assert stream_text(out.cells[0]) == "started\n"
    assert out.cells[1].outputs[-1].ename == "DeadKernelError"
    assert manager.kernels.mkm.list_kernel_ids() == []


async def test_output_names_are_unique_under_concurrency(run, manager, jp_root_dir):
    (jp_root_dir / "noparams-Executed2.ipynb").write_text("{}")  # a taken name is skipped
    starts = await asyncio.gather(*(run(notebook="noparams.ipynb") for _ in range(6)))
    executions = [manager.get(s["execution"]["exec_id"]) for s in starts]
    await asyncio.gather(*(wait_done(ex) for ex in executions))
    outputs = sorted(ex.output_path for ex in executions)
    assert len(set(outputs)) == 6
    assert outputs == sorted(f"noparams-Executed{n}.ipynb" for n in (1, 3, 4, 5, 6, 7))
    assert all(ex.status == "completed" for ex in executions)
    for name in outputs:
        assert read_json(jp_root_dir / name).cells[0].outputs[0].data["text/plain"] == "2"


async def test_overwrite_rules(run, manager, jp_root_dir):
    first = await run(chunked=True, notebook="noparams.ipynb", output_path="out.ipynb")
    assert first[-1]["execution"]["output_path"] == "out.ipynb"
    assert first[0]["execution"]["output_path"] == "out.ipynb"  # requested: known from the start
    refused = await run(notebook="noparams.ipynb", output_path="out.ipynb")
    assert refused.code == 400 and "already exists" in json.loads(refused.body)["message"]
    refused = await run(notebook="noparams.ipynb", output_path="out.ipynb", overwrite="no")
    assert refused.code == 400
    again = await run(chunked=True, notebook="simple.ipynb", output_path="out.ipynb",
                      overwrite="true")
    assert again[-1]["event"] == "notebook_complete"
    assert read_json(jp_root_dir / "out.ipynb").cells[0].cell_type == "markdown"
    # two runs may not write the same file at the same time, even with overwrite
    slow = await run(notebook="slow.ipynb", output_path="out.ipynb", overwrite="1")
    clash = await run(notebook="simple.ipynb", output_path="out.ipynb", overwrite="1")
    assert clash.code == 400 and "another execution" in json.loads(clash.body)["message"]
    await manager.shutdown(slow["execution"]["exec_id"])


async def test_the_output_name_holds_a_whole_notebook_while_running(run, manager, jp_root_dir):
    ex = manager.get((await run(notebook="slow.ipynb", x="1"))["execution"]["exec_id"])
    await wait_for_event(ex, "start", lambda e: "sleep" in e["cell"]["source"])
    placeholder = read_json(jp_root_dir / "slow-Executed1.ipynb")  # a valid notebook
    assert placeholder.cells[0].metadata.tags == ["injected-parameters"]
    assert all(c.get("outputs", []) == [] for c in placeholder.cells)
    await manager.shutdown(ex.exec_id)
    assert read_json(jp_root_dir / "slow-Executed1.ipynb").cells[1].outputs


async def test_an_output_that_cannot_be_written_is_a_clear_error(
    run, manager, jp_root_dir, monkeypatch
):
    import errno

    from nbexec_hub.extension import runner

    def disk_full(os_path, text):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), os_path)

    monkeypatch.setattr(runner, "write_atomically", disk_full)
    events = await run(chunked=True, notebook="simple.ipynb", output_path="full.ipynb")
    final = events[-1]
    assert final["event"] == "notebook_error"
    assert final["execution"]["status"] == (
        "error: writing the output notebook failed: No space left on device"
    )
    assert final["output_path"] is None and final["execution"]["output_path"] is None
    assert not (jp_root_dir / "full.ipynb").exists()  # no placeholder left behind
    assert str(jp_root_dir) not in final["error"]  # no server paths in the answer
