"""Each request of A.2 with its status codes and bodies, on a real server and kernels."""

from __future__ import annotations

import json
import os

import pytest

from tests.support.ext_helpers import read_json, wait_done, wait_for_event

MODEL_KEYS = [
    "exec_id", "path", "params", "output_path", "overwrite", "jupyter_kernel", "cell_timeout",
    "status", "progress", "last_cell_source", "started_at", "completed_at",
]


def assert_model(model: dict) -> None:
    assert list(model)[: len(MODEL_KEYS)] == MODEL_KEYS


async def fetch_json(jp_fetch, *parts, **kwargs):
    response = await jp_fetch(*parts, raise_error=False, **kwargs)
    return response.code, (json.loads(response.body) if response.body else None)


async def test_post_returns_notebook_start_then_runs_in_background(run, manager, jp_root_dir):
    event = await run(notebook="simple.ipynb", a="5")
    assert list(event) == ["event", "timestamp", "execution"]
    assert event["event"] == "notebook_start"
    model = event["execution"]
    assert_model(model)
    assert model["path"] == "simple.ipynb" and model["params"] == {"a": "5"}
    assert model["output_path"] is None and model["overwrite"] is False
    assert model["status"] in ("initializing", "executing") and model["completed_at"] is None
    ex = await wait_done(manager.get(model["exec_id"]))
    final = ex.model()
    assert final["status"] == "completed" and final["progress"] == "4/4"
    assert final["output_path"] == "simple-Executed1.ipynb"
    assert final["last_cell_source"] == "a + b"
    assert final["started_at"] <= final["completed_at"]
    out = read_json(jp_root_dir / "simple-Executed1.ipynb")
    assert out["cells"][2]["metadata"]["tags"] == ["injected-parameters"]
    assert out["cells"][4]["outputs"][0]["data"]["text/plain"] == "7.5"


async def test_chunked_post_streams_every_event_with_its_keys_in_order(run):
    events = await run(chunked=True, notebook="simple.ipynb")
    outputs = [e for e in events if e["event"] == "output"]  # test_ext_live_output.py
    assert outputs and all(list(e) == ["event", "timestamp", "progress", "output"]
                           for e in outputs)
    events = [e for e in events if e["event"] != "output"]
    names = [e["event"] for e in events]
    assert names == ["notebook_start"] + ["start", "end"] * 3 + ["notebook_complete"]
    assert all("seq" not in e for e in events)
    assert list(events[0]) == ["event", "timestamp", "execution"]
    for event in events[1:-1]:
        assert list(event) == ["event", "timestamp", "progress", "cell"]
    assert [e["progress"] for e in events[1:-1]] == ["1/3", "1/3", "2/3", "2/3", "3/3", "3/3"]
    start, end = events[3], events[4]
    assert start["cell"]["source"] == "print('hello', a)" and start["cell"]["outputs"] == []
    assert set(start["cell"]["metadata"]["nbexec"]) == {"start_time"}
    assert end["cell"]["outputs"][0]["text"] == "hello 1\n"
    timing = end["cell"]["metadata"]["nbexec"]
    assert list(timing) == ["start_time", "end_time", "duration"]
    assert timing["start_time"].endswith("+00:00") and timing["end_time"].endswith("+00:00")
    assert 0 <= timing["duration"] < 30
    assert list(events[-1]) == ["event", "timestamp", "execution"]
    assert events[-1]["execution"]["status"] == "completed"
    stamps = [e["timestamp"] for e in events]
    assert stamps == sorted(stamps)


async def test_json_body_keeps_json_types(run, manager, jp_root_dir):
    events = await run(
        chunked=True,
        json_body={"notebook": "params.ipynb", "n": 7, "items": [3, {"a": None}], "flag": True,
                   "overwrite": False, "cell_timeout": 30},
    )
    model = events[-1]["execution"]
    assert model["status"] == "completed", events[-1]
    assert model["params"] == {"n": 7, "items": [3, {"a": None}], "flag": True}
    assert model["cell_timeout"] == 30
    ends = [e for e in events if e["event"] == "end"]
    printed = json.loads(ends[-2]["cell"]["outputs"][0]["text"])
    assert printed["n"] == ["int", "7"] and printed["flag"] == ["bool", "True"]
    assert printed["items"] == ["list", "[3, {'a': None}]"]


async def test_get_list_and_one(jp_fetch, run, manager):
    first = (await run(chunked=True, notebook="noparams.ipynb"))[-1]["execution"]
    code, body = await fetch_json(jp_fetch, "api", "executions")
    assert code == 200 and [m["exec_id"] for m in body["executions"]] == [first["exec_id"]]
    assert_model(body["executions"][0])
    code, body = await fetch_json(jp_fetch, "api", "executions", first["exec_id"])
    assert code == 200 and body["execution"]["status"] == "completed"
    assert_model(body["execution"])
    code, body = await fetch_json(jp_fetch, "api", "executions", "no-such-id")
    assert code == 404 and "no-such-id" in body["message"] and body["reason"] == "NotFound"


async def test_shutdown_action_without_and_with_chunked(jp_fetch, run, manager, jp_root_dir):
    model = (await run(notebook="slow.ipynb"))["execution"]
    ex = manager.get(model["exec_id"])
    await wait_for_event(ex, "start", lambda e: "sleep" in e["cell"]["source"])
    response = await jp_fetch("api", "executions", ex.exec_id, method="POST",
                              body="action=shutdown")
    assert response.code == 202 and response.body == b""
    await wait_done(ex, timeout=20)
    assert ex.status == "error: shut down by request"
    last = ex.events_since(0)[-1][1]
    assert last["event"] == "notebook_error" and "ExecutionShutdown" in last["error"]
    assert "time.sleep(60)" in last["error"]
    out = read_json(jp_root_dir / "slow-Executed1.ipynb")
    assert out["cells"][0]["outputs"][0]["text"] == "started\n"
    assert out["cells"][1]["outputs"][-1]["ename"] == "ExecutionShutdown"
    assert manager.kernels.mkm.list_kernel_ids() == []

    model = (await run(notebook="slow.ipynb"))["execution"]
    ex = manager.get(model["exec_id"])
    await wait_for_event(ex, "start", lambda e: "sleep" in e["cell"]["source"])
    code, body = await fetch_json(jp_fetch, "api", "executions", ex.exec_id, method="POST",
                                  body="action=shutdown",
                                  headers={"X-Response-Encoding": "chunked"})
    assert code == 202 and body["execution"]["status"] == "error: shut down by request"
    assert body["execution"]["output_path"] == "slow-Executed2.ipynb"
    assert body["execution"]["completed_at"] is not None
    # shutting a finished execution down again changes nothing
    code, body = await fetch_json(jp_fetch, "api", "executions", ex.exec_id, method="POST",
                                  body="action=shutdown",
                                  headers={"X-Response-Encoding": "chunked"})
    assert code == 202 and body["execution"]["status"] == "error: shut down by request"


@pytest.mark.parametrize("body, message", [("action=restart", "unknown action"), ("", "required")])
async def test_bad_actions(jp_fetch, run, manager, body, message):
    model = (await run(chunked=True, notebook="noparams.ipynb"))[-1]["execution"]
    code, reply = await fetch_json(jp_fetch, "api", "executions", model["exec_id"],
                                   method="POST", body=body, allow_nonstandard_methods=True)
    assert code == 400 and message in reply["message"]
    code, _ = await fetch_json(jp_fetch, "api", "executions", "nope", method="POST",
                               body="action=shutdown")
    assert code == 404


async def test_delete_one_and_all(jp_fetch, run, manager):
    done = (await run(chunked=True, notebook="noparams.ipynb"))[-1]["execution"]
    response = await jp_fetch("api", "executions", done["exec_id"], method="DELETE")
    assert response.code == 202 and response.body == b""
    code, _ = await fetch_json(jp_fetch, "api", "executions", done["exec_id"])
    assert code == 404
    code, _ = await fetch_json(jp_fetch, "api", "executions", done["exec_id"], method="DELETE")
    assert code == 404

    running = (await run(notebook="slow.ipynb"))["execution"]
    ex = manager.get(running["exec_id"])
    await wait_for_event(ex, "start")
    response = await jp_fetch("api", "executions", ex.exec_id, method="DELETE",
                              headers={"X-Response-Encoding": "chunked"})
    assert response.code == 202 and ex.is_done and ex.status == "error: deleted"

    a = manager.get((await run(notebook="slow.ipynb"))["execution"]["exec_id"])
    b = manager.get((await run(notebook="slow.ipynb"))["execution"]["exec_id"])
    response = await jp_fetch("api", "executions", method="DELETE")
    assert response.code == 202 and response.body == b""
    code, body = await fetch_json(jp_fetch, "api", "executions")
    assert body == {"executions": []}
    await wait_done(a, 20)
    await wait_done(b, 20)
    assert a.status == b.status == "error: deleted"
    for _ in range(50):  # kernels are shut down right after the final event
        if not manager.kernels.mkm.list_kernel_ids():
            break
        await __import__("asyncio").sleep(0.1)
    assert manager.kernels.mkm.list_kernel_ids() == []


async def test_parameters_endpoint(jp_fetch):
    code, body = await fetch_json(jp_fetch, "api", "executions", "parameters",
                                  params={"notebook": "params.ipynb"})
    assert code == 200 and body["path"] == "params.ipynb"
    first = body["parameters"][0]
    assert first == {"name": "n", "default": "1", "type": "int", "help": "an int"}
    assert [p["type"] for p in body["parameters"]] == [
        "int", "float", "bool", "str", "list", "dict", "tuple", "NoneType", None
    ]
    code, body = await fetch_json(jp_fetch, "api", "executions", "parameters",
                                  params={"notebook": "noparams.ipynb"})
    assert code == 200 and body["parameters"] == []
    code, body = await fetch_json(jp_fetch, "api", "executions", "parameters",
                                  params={"notebook": "missing.ipynb"})
    assert code == 404 and "missing.ipynb" in body["message"]
    for bad in ({}, {"notebook": "../x.ipynb"}, {"notebook": "broken.ipynb"}):
        code, body = await fetch_json(jp_fetch, "api", "executions", "parameters", params=bad)
        assert code == 400, bad
        assert body["message"]


@pytest.mark.parametrize(
    "method, parts, body",
    [
        ("GET", ("api", "executions"), None),
        ("POST", ("api", "executions"), "notebook=simple.ipynb"),
        ("DELETE", ("api", "executions"), None),
        ("GET", ("api", "executions", "x"), None),
        ("POST", ("api", "executions", "x"), "action=shutdown"),
        ("DELETE", ("api", "executions", "x"), None),
        ("GET", ("api", "executions", "x", "progress"), None),
        ("GET", ("api", "executions", "parameters"), None),
    ],
)
async def test_401_without_credentials(jp_fetch, manager, method, parts, body):
    response = await jp_fetch(*parts, method=method, body=body, headers={"Authorization": ""},
                              raise_error=False, follow_redirects=False)
    assert response.code == 401
    assert response.headers["Content-Type"].startswith("application/json")
    reply = json.loads(response.body)
    assert "token" in reply["message"] and reply["reason"] == "Unauthorized"
    response = await jp_fetch(*parts, method=method, body=body,
                              headers={"Authorization": "token wrong"}, raise_error=False,
                              follow_redirects=False)
    assert response.code == 401
    assert manager.list() == []


async def test_body_too_large_is_413(jp_fetch, jp_serverapp):
    jp_serverapp.web_app.settings["nbexec_max_body_bytes"] = 100
    code, body = await fetch_json(jp_fetch, "api", "executions", method="POST",
                                  body="notebook=simple.ipynb&x=" + "a" * 200)
    assert code == 413 and "100 bytes" in body["message"]


async def test_kernel_runs_in_the_notebook_folder_and_shows_in_the_kernel_list(
    run, manager, jp_root_dir
):
    model = (await run(notebook="sub/cwd.ipynb"))["execution"]
    ex = manager.get(model["exec_id"])
    await wait_for_event(ex, "start")
    assert ex.kernel_id in manager.kernels.mkm.list_kernel_ids()
    await wait_done(ex)
    assert ex.model()["output_path"] == "sub/cwd-Executed1.ipynb"
    out = read_json(jp_root_dir / "sub" / "cwd-Executed1.ipynb")
    assert out["cells"][0]["outputs"][0]["text"].strip() == str(jp_root_dir / "sub")
    assert (jp_root_dir / "sub" / "written.txt").read_text() == "hi"
    assert out["metadata"]["language_info"]["name"] == "python"
    assert ex.kernel_id is None and manager.kernels.mkm.list_kernel_ids() == []
    assert not [f for f in os.listdir(jp_root_dir / "sub") if f.endswith(".tmp")]


async def test_a_first_run_gets_a_kernel_started_for_it(jp_serverapp, run, manager):
    from nbexec_hub.extension.kernels import ServerKernels

    assert type(manager.kernels) is ServerKernels
    events = await run(chunked=True, notebook="noparams.ipynb")
    assert events[-1]["execution"]["warm_kernel"] is False
