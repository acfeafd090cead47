"""Bad input through the whole chain (caller → proxy → service → proxy → alice's server):
always a 4xx with a JSON message, never a 500, never a file touched outside the root.

The extension's own tests cover most of these in-process; here they go over real HTTP
through the service, which parses, buffers and forwards every body itself.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import nbformat
import pytest
import requests

from tests.support.realhub import RealHub, tiny_notebook
from tests.support.rel_helpers import EXECS
from tests.support.service_calls import Service, ndjson_events


def assert_json_4xx(resp: requests.Response, *allowed: int) -> dict[str, Any]:
    """A 4xx (one of ``allowed`` when given) with a JSON body carrying a message."""
    assert 400 <= resp.status_code < 500, f"{resp.status_code}: {resp.text[:300]}"
    if allowed:
        assert resp.status_code in allowed, f"{resp.status_code}: {resp.text[:300]}"
    assert resp.headers.get("Content-Type", "").startswith("application/json"), resp.headers
    body = resp.json()
    assert isinstance(body.get("message"), str) and body["message"], body
    return body


@pytest.fixture
def alice(realhub: RealHub, alice_token: str, alice_server: Any) -> Service:
    realhub.put_notebook("alice", "bad/nb.ipynb", tiny_notebook())
    return Service(realhub, alice_token)


FORM = {"Content-Type": "application/x-www-form-urlencoded"}
JSON = {"Content-Type": "application/json"}


@pytest.mark.parametrize(
    ("headers", "body"),
    [
        (FORM, b"notebook=%ZZ%&&=&=="),  # broken percent-escapes
        (FORM, b"notebook=bad%2Fnb.ipynb&cell_timeout=%FF"),  # not UTF-8 once decoded
        (FORM, b"notebook=bad/nb.ipynb\xff\xfe"),  # not UTF-8 at all
        (FORM, b"\x00\x01\x02"),
        (JSON, b'{"notebook": '),  # truncated
        (JSON, b"[1, 2, 3]"),  # not an object
        (JSON, b"null"),
        (JSON, b'"bad/nb.ipynb"'),
        (JSON, b'{"notebook": "bad/nb.ipynb\xff"}'),  # not UTF-8
        (JSON, b'{"notebook": ["bad/nb.ipynb"]}'),  # wrong type
        (JSON, b'{"notebook": "bad/nb.ipynb", "cell_timeout": "soon"}'),
        (JSON, b'{"notebook": "bad/nb.ipynb", "overwrite": true}'),  # without output_path
        ({"Content-Type": "text/plain"}, b"notebook=bad/nb.ipynb"),
        ({}, b""),
    ],
)
def test_malformed_bodies(alice: Service, headers: dict[str, str], body: bytes) -> None:
    assert_json_4xx(alice.request("POST", EXECS, data=body, headers=headers))


def test_malformed_action_bodies(alice: Service) -> None:
    exec_id = alice.run("alice", "bad/nb.ipynb")["exec_id"]
    for headers, body in [(FORM, b"action=%FF"), (JSON, b"{"), (JSON, b'{"action": 1}'),
                          (FORM, b"action=explode"), (FORM, b"")]:
        resp = alice.request("POST", f"{EXECS}/{exec_id}", data=body, headers=headers)
        assert_json_4xx(resp, 400)


def test_body_over_the_extension_limit_is_413(alice: Service) -> None:
    body = {"notebook": "bad/nb.ipynb", "big": "x" * (11 * 1024 * 1024)}
    assert_json_4xx(alice.request("POST", EXECS, data=body), 413)


def test_body_over_the_service_limit_is_a_json_4xx(alice: Service) -> None:
    """150 MB is past tornado's default body limit (100 MB): the service itself must say
    413 in JSON rather than drop the connection (the caller would then get the proxy's
    503 page)."""
    body = b"notebook=bad%2Fnb.ipynb&big=" + b"x" * (150 * 1024 * 1024)
    try:
        resp = alice.request("POST", EXECS, data=body, headers=FORM, timeout=120)
    except requests.ConnectionError as exc:
        pytest.fail(f"the service dropped the connection instead of answering 413: {exc}")
    assert_json_4xx(resp, 413)


@pytest.fixture
def outside(realhub: RealHub, tmp_path: Path) -> Path:
    """A folder outside alice's root holding a notebook, and symlinks to it in her root."""
    folder = tmp_path / "outside"
    folder.mkdir()
    nbformat.write(tiny_notebook(), folder / "secret.ipynb")
    home = realhub.home("alice")
    for name, target in (("escape", folder), ("escape.ipynb", folder / "secret.ipynb")):
        link = home / "bad" / name
        link.parent.mkdir(exist_ok=True)
        if link.is_symlink():
            link.unlink()
        link.symlink_to(target)
    return folder


@pytest.mark.parametrize(
    "params",
    [
        {"notebook": "../nb.ipynb"},
        {"notebook": "bad/../../nb.ipynb"},
        {"notebook": "/etc/passwd"},
        {"notebook": "bad/escape/secret.ipynb"},
        {"notebook": "bad/escape.ipynb"},
        {"notebook": "bad/nb.ipynb", "output_path": "../out.ipynb"},
        {"notebook": "bad/nb.ipynb", "output_path": "/tmp/out.ipynb"},
        {"notebook": "bad/nb.ipynb", "output_path": "bad/escape/out.ipynb"},
        {"notebook": "bad/nb.ipynb", "output_path": "bad/escape"},
    ],
    ids=lambda p: ",".join(f"{k}={v}" for k, v in p.items()),
)
def test_paths_out_of_the_root_are_refused(
    alice: Service, outside: Path, params: dict[str, str]
) -> None:
    before = sorted(p.name for p in outside.iterdir())
    assert_json_4xx(alice.request("POST", EXECS, data=params), 400, 404)
    assert sorted(p.name for p in outside.iterdir()) == before, "a file appeared outside"
    resp = alice.request("GET", f"{EXECS}/parameters", params={"notebook": params["notebook"]})
    if params["notebook"] != "bad/nb.ipynb":
        assert_json_4xx(resp, 400, 404)


def test_unknown_kernel(alice: Service) -> None:
    body = assert_json_4xx(
        alice.request("POST", EXECS, data={"notebook": "bad/nb.ipynb", "jupyter_kernel": "nope"}),
        400,
    )
    assert "nope" in body["message"]


@pytest.mark.parametrize(
    ("name", "content"),
    [("notes.txt", b"just text\n"), ("broken.ipynb", b'{"cells": [ {"cell_type": '),
     ("empty.ipynb", b""), ("binary.ipynb", bytes(range(256)))],
)
def test_files_that_are_not_notebooks_end_in_notebook_error(
    realhub: RealHub, alice: Service, name: str, content: bytes
) -> None:
    (realhub.home("alice") / "bad" / name).write_bytes(content)
    resp = alice.request("POST", EXECS, data={"notebook": f"bad/{name}"}, stream=True,
                         headers={"X-Response-Encoding": "chunked"})
    assert resp.status_code == 202, resp.text
    final = list(ndjson_events(resp))[-1]
    assert final["event"] == "notebook_error", final
    assert final["execution"]["status"].startswith("error:")
    assert final["execution"]["output_path"] is None


def test_a_folder_as_notebook(alice: Service) -> None:
    assert_json_4xx(alice.request("POST", EXECS, data={"notebook": "bad"}), 400, 404)


HOSTILE = [
    "'; import os #",
    '"""; raise SystemExit(3); """',
    "a\"b'c\nd\\e\r\n\tf",
    "ünïcødé ✓ 🚀 日本語",
    "\u2028\u2029\x00\x7f",
    "}}{{ {x} %s",
]


@pytest.mark.parametrize("encoding", ["form", "json"])
def test_hostile_parameter_values_arrive_as_strings(
    realhub: RealHub, alice: Service, encoding: str
) -> None:
    nb = tiny_notebook()
    nb.cells[0].source = "\n".join(f"p{i} = 'default'" for i in range(len(HOSTILE)))
    nb.cells[1].source = (
        "import json\nprint(json.dumps(["
        + ", ".join(f"p{i}" for i in range(len(HOSTILE))) + "]))"
    )
    realhub.put_notebook("alice", "bad/hostile.ipynb", nb)
    params = {f"p{i}": value for i, value in enumerate(HOSTILE)}
    data = {"notebook": "bad/hostile.ipynb", **params}
    kwargs: dict[str, Any] = {"json": data} if encoding == "json" else {"data": data}
    resp = alice.request("POST", EXECS, stream=True, headers={"X-Response-Encoding": "chunked"},
                         **kwargs)
    assert resp.status_code == 202, resp.text
    events = list(ndjson_events(resp))
    assert events[-1]["event"] == "notebook_complete", events[-1]
    last_end = [e for e in events if e["event"] == "end"][-1]
    printed = last_end["cell"]["outputs"][0]["text"]
    assert json.loads(printed) == HOSTILE


@pytest.mark.parametrize("suffix", ["", "/progress"])
@pytest.mark.parametrize("method", ["GET", "POST", "DELETE"])
def test_unknown_execution_ids(alice: Service, method: str, suffix: str) -> None:
    if suffix and method != "GET":
        return
    for exec_id in (str(uuid.uuid4()), "not-a-uuid", "%C3%A9t%C3%A9", "a" * 500):
        resp = alice.request(method, f"{EXECS}/{exec_id}{suffix}", data={"action": "shutdown"})
        assert_json_4xx(resp, 404, 400)


def test_non_utf8_in_the_path_straight_to_the_service(realhub: RealHub, alice: Service) -> None:
    """Percent-escapes that are not UTF-8, sent to the service's own port.

    (Through configurable-http-proxy such a path never reaches the service: the proxy
    fails to decode it and answers with the hub's 500 page — a limitation of the proxy,
    the same for every JupyterHub service and server.)
    """
    base = f"http://127.0.0.1:{realhub.service_port}/services/nbexec/"
    headers = {"Authorization": f"token {alice.token}"}
    for path in (f"{EXECS}/%FF%FE", f"{EXECS}/%FF%FE/progress", "api/users/%FF/server",
                 "api/users/%FF/executions"):
        resp = requests.get(base + path, headers=headers, timeout=60)
        assert_json_4xx(resp, 400, 404)


def test_unknown_service_api_routes_are_json_404(alice: Service) -> None:
    """Not tornado's HTML 404 page: JSON, like every other API answer."""
    for path in ("api/nope", "api/users/alice/", "api/users/alice/servers/", "api/users"):
        assert_json_4xx(alice.request("GET", path), 404)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("PUT", EXECS), ("PATCH", EXECS), ("PUT", f"{EXECS}/{uuid.uuid4()}"),
        ("PATCH", f"{EXECS}/{uuid.uuid4()}"), ("POST", f"{EXECS}/{uuid.uuid4()}/progress"),
        ("DELETE", f"{EXECS}/{uuid.uuid4()}/progress"), ("POST", f"{EXECS}/parameters"),
        ("PUT", "api/health"), ("POST", "api/health"), ("DELETE", "api/executions"),
        ("PUT", "api/users/alice/server"), ("PATCH", "api/users/alice/server/progress"),
        ("DELETE", "api/users/alice/contents/bad/nb.ipynb"),
        ("PUT", "api/users/alice/kernelspecs"),
    ],
)
def test_wrong_methods_are_json_4xx(alice: Service, method: str, path: str) -> None:
    assert_json_4xx(alice.request(method, path, data=b""), 405, 404)
