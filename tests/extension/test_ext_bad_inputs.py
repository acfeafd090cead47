"""Every bad input of A.3 gets its 400/404 with a helpful message, and creates nothing."""

from __future__ import annotations

import json

import pytest

from tests.support.ext_helpers import wait_done


@pytest.mark.parametrize(
    "params, status, message",
    [
        ({}, 400, "notebook parameter is required"),
        ({"notebook": "simple.ipynb", "overwrite": "true"}, 400, "needs an output_path"),
        ({"notebook": "simple.ipynb", "overwrite": "perhaps"}, 400, "overwrite"),
        ({"notebook": "simple.ipynb", "cell_timeout": "0"}, 400, "positive integer"),
        ({"notebook": "simple.ipynb", "cell_timeout": "ten"}, 400, "positive integer"),
        ({"notebook": "simple.ipynb", "jupyter_kernel": "no-such-kernel"}, 400, "unknown kernel"),
        ({"notebook": "../simple.ipynb"}, 400, "inside the server root"),
        ({"notebook": "/etc/passwd"}, 400, "absolute"),
        ({"notebook": "simple.ipynb", "output_path": "../o.ipynb"}, 400, "inside the server root"),
        ({"notebook": "simple.ipynb", "output_path": "/tmp/out.ipynb"}, 400, "absolute"),
        ({"notebook": "simple.ipynb", "output_path": "error.ipynb"}, 400, "already exists"),
        ({"notebook": "simple.ipynb", "output_path": "nodir/o.ipynb"}, 400, "does not exist"),
        ({"notebook": "simple.ipynb", "a": "not-an-int"}, 400, "must be an int"),
        ({"notebook": "params.ipynb", "flag": "maybe"}, 400, "true/false"),
        ({"notebook": "params.ipynb", "x": "fast"}, 400, "must be a float"),
        ({"notebook": "params.ipynb", "items": "[1,"}, 400, "not a Python literal"),
        ({"notebook": "params.ipynb", "mapping": "[1]"}, 400, "must be a dict"),
        ({"notebook": "simple.ipynb", "bad name": "1"}, 400, "identifier"),
        ({"notebook": "sub"}, 400, "directory"),
        ({"notebook": "missing.ipynb"}, 404, "notebook not found"),
        ({"notebook": "sub/missing.ipynb"}, 404, "notebook not found"),
    ],
)
async def test_bad_run_requests(run, manager, jp_root_dir, params, status, message):
    before = sorted(p.name for p in jp_root_dir.iterdir())
    response = await run(**params)
    assert response.code == status
    body = json.loads(response.body)
    assert message in body["message"] and body["reason"] in ("BadRequest", "NotFound")
    assert manager.list() == []
    assert sorted(p.name for p in jp_root_dir.iterdir()) == before


async def test_bad_json_bodies(jp_fetch):
    for body in ("[1, 2]", "{not json"):
        response = await jp_fetch("api", "executions", method="POST", body=body,
                                  headers={"Content-Type": "application/json"}, raise_error=False)
        assert response.code == 400
        assert json.loads(response.body)["message"].startswith("the JSON body")


async def test_parameters_for_a_non_python_kernel(run, fake_kernelspec, manager):
    response = await run(notebook="simple.ipynb", jupyter_kernel=fake_kernelspec, a="1")
    assert response.code == 400
    assert "only be injected into Python kernels" in json.loads(response.body)["message"]
    assert manager.list() == []


async def test_a_file_that_is_not_a_notebook_ends_with_notebook_error(run, manager, jp_root_dir):
    event = await run(notebook="broken.ipynb")
    assert event["event"] == "notebook_start"
    ex = await wait_done(manager.get(event["execution"]["exec_id"]))
    events = [e for _, e in ex.events_since(0)]
    assert [e["event"] for e in events] == ["notebook_start", "notebook_error"]
    assert list(events[-1]) == ["event", "timestamp", "output_path", "error", "execution"]
    assert events[-1]["output_path"] is None and "not a valid notebook" in events[-1]["error"]
    model = ex.model()
    assert model["status"].startswith("error: ") and "not a valid notebook" in model["status"]
    assert model["output_path"] is None and model["completed_at"] is not None
    assert not list(jp_root_dir.glob("broken-Executed*"))
    chunked = await run(chunked=True, notebook="broken.ipynb", output_path="b.ipynb")
    assert [e["event"] for e in chunked] == ["notebook_start", "notebook_error"]
    assert chunked[-1]["execution"]["output_path"] is None
