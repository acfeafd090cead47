"""Issue 10, item 7: what the extension refuses to write and to parse.

Output paths must be visible notebooks; JSON bodies must be strict JSON of bounded depth;
no body whatsoever gets a 500.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nbexec_hub.errors import BadRequest
from nbexec_hub.extension.request import parse_json_body, parse_run_request
from tests.support.ext_helpers import server_config, settle

FILES = Path(__file__).parent.parent / "files"


def files_under(root) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


@pytest.fixture
def jp_root_dir(tmp_path):
    """A root with a notebook, a hidden folder (as a home has) and a hidden sub-folder."""
    root = tmp_path / "root_dir"
    root.mkdir()
    (root / "simple.ipynb").write_bytes((FILES / "simple.ipynb").read_bytes())
    for folder in (".jupyter", "sub/.hidden", ".visible-when-allowed"):
        (root / folder).mkdir(parents=True)
    (root / "plain.txt").write_text("keep me\n")
    return root


async def post_json(jp_fetch, body: bytes | str, path=("api", "executions")):
    return await jp_fetch(
        *path, method="POST", body=body,
        headers={"Content-Type": "application/json"}, raise_error=False,
    )


@pytest.mark.parametrize(
    "output_path, overwrite, message",
    [
        (".jupyter/evil.py", None, "must not be hidden"),
        (".jupyter/evil.ipynb", None, "must not be hidden"),
        ("sub/.hidden/x.ipynb", None, "must not be hidden"),
        (".x.ipynb", None, "must not be hidden"),
        ("plain.txt", "true", "ending in .ipynb"),
        ("new.py", None, "ending in .ipynb"),
        ("simple.ipynb.bak", "true", "ending in .ipynb"),
    ],
)
async def test_output_paths_refused(run, manager, jp_root_dir, output_path, overwrite, message):
    before = files_under(jp_root_dir)
    params = {"notebook": "simple.ipynb", "output_path": output_path}
    if overwrite:
        params["overwrite"] = overwrite
    response = await run(**params)
    assert response.code == 400
    body = json.loads(response.body)
    assert message in body["message"] and output_path in body["message"]
    assert body["reason"] == "BadRequest"
    assert manager.list() == [] and files_under(jp_root_dir) == before
    assert (jp_root_dir / "plain.txt").read_text() == "keep me\n"


async def test_a_hidden_notebook_is_refused(run, jp_fetch, jp_root_dir):
    (jp_root_dir / ".jupyter" / "nb.ipynb").write_bytes((jp_root_dir / "simple.ipynb").read_bytes())
    response = await run(notebook=".jupyter/nb.ipynb")
    assert response.code == 400
    assert "notebook must not be hidden" in json.loads(response.body)["message"]
    assert not list((jp_root_dir / ".jupyter").glob("nb-Executed*"))
    response = await jp_fetch("api", "executions", "parameters", raise_error=False,
                              params={"notebook": ".jupyter/nb.ipynb"})
    assert response.code == 400
    assert "notebook must not be hidden" in json.loads(response.body)["message"]


class TestHiddenFilesAllowed:
    """A server that shows hidden files (``ContentsManager.allow_hidden``) may write them."""

    @pytest.fixture
    def jp_server_config(self):
        return {**server_config(), "ContentsManager": {"allow_hidden": True}}

    async def test_hidden_output_paths_are_written(self, run, jp_fetch, manager, jp_root_dir):
        events = await run(
            chunked=True, notebook="simple.ipynb", output_path=".visible-when-allowed/x.ipynb"
        )
        assert events[-1]["execution"]["status"] == "completed"
        assert (jp_root_dir / ".visible-when-allowed" / "x.ipynb").is_file()
        # still a notebook, hidden or not
        response = await run(notebook="simple.ipynb", output_path=".jupyter/evil.py")
        assert response.code == 400 and "ending in .ipynb" in json.loads(response.body)["message"]
        response = await jp_fetch("api", "executions", "parameters",
                                  params={"notebook": ".visible-when-allowed/x.ipynb"})
        assert response.code == 200
        await settle(manager)


@pytest.mark.parametrize(
    "body, message",
    [
        ('{"notebook": "simple.ipynb", "cell_timeout": ' + "9" * 400 + "}", "at most"),
        ('{"notebook": "simple.ipynb", "a": NaN}', "NaN is not JSON"),
        ('{"notebook": "simple.ipynb", "a": Infinity}', "Infinity is not JSON"),
        ('{"notebook": "simple.ipynb", "a": -Infinity}', "-Infinity is not JSON"),
        ('{"notebook": "simple.ipynb", "a": 1e999}', "out of range"),
        ('{"notebook": "simple.ipynb", "a": -1e999}', "out of range"),
        ('{"notebook": "simple.ipynb", "a": ' + "[" * 65 + "]" * 65 + "}", "deeper than 64"),
        ('{"notebook": "simple.ipynb", "a": ' + "[" * 100000 + "]" * 100000 + "}",
         "deeper than 64"),
        ('{"a": ' * 5000 + "1" + "}" * 5000, "deeper than 64"),
        ("[" * 1000000, "deeper than 64"),
        ('{"notebook": "simple.ipynb", "a": "\\ud800"}', "lone surrogate"),
        ('{"notebook": "simple.ipynb", "a": ' + "9" * 5000 + "}", "does not parse"),
        (b'{"notebook": "simple\xff.ipynb"}', "does not parse"),
        ("[1, 2]", "must be an object"),
        ('"simple.ipynb"', "must be an object"),
        ("null", "must be an object"),
        ("", "notebook parameter is required"),
    ],
)
async def test_strict_json_bodies(jp_fetch, manager, body, message):
    response = await post_json(jp_fetch, body)
    assert response.code == 400
    assert message in json.loads(response.body)["message"]
    assert manager.list() == []


async def test_json_within_the_limits_is_taken(run, manager):
    nested = {"k": 1}
    for _ in range(60):
        nested = {"k": nested}
    events = await run(
        chunked=True,
        json_body={"notebook": "simple.ipynb", "a": 2, "a_dup": 1, "deep": nested,
                   "big": 10**300, "tiny": 1e-300, "emoji": "\ud83d\ude00"},
    )
    assert events[-1]["execution"]["status"] == "completed"
    assert events[-1]["execution"]["params"]["deep"] == nested
    await settle(manager)


async def test_duplicate_keys_keep_the_last(jp_fetch, manager):
    response = await post_json(jp_fetch, '{"notebook": "nope.ipynb", "notebook": "simple.ipynb"}')
    assert response.code == 202
    assert json.loads(response.body)["execution"]["path"] == "simple.ipynb"
    await settle(manager)


BODIES = [
    b"\x00", b"\xff\xfe\xfd", b"{", b"}", b"{}", b"[]", b"0", b"-0", b"true", b'"\\u0000"',
    b'{"notebook": null}', b'{"notebook": 1}', b'{"notebook": ["simple.ipynb"]}',
    b'{"notebook": {"a": 1}}', b'{"notebook": ""}', b'{"notebook": "\\u0000"}',
    b'{"notebook": "simple.ipynb", "cell_timeout": 1e300}',
    b'{"notebook": "simple.ipynb", "cell_timeout": ' + b"9" * 400 + b"}",
    b'{"notebook": "simple.ipynb", "cell_timeout": true}',
    b'{"notebook": "simple.ipynb", "overwrite": [], "output_path": "o.ipynb"}',
    b'{"notebook": "simple.ipynb", "jupyter_kernel": 3}',
    b'{"notebook": "simple.ipynb", "jupyter_kernel": "../../etc"}',
    b'{"notebook": "simple.ipynb", "output_path": {}}',
    b'{"notebook": "simple.ipynb", "": 1}', b'{"notebook": "simple.ipynb", "1x": 1}',
    b'{"notebook": "simple.ipynb", "a": "\\ud83d"}',
    b'{"notebook": "simple.ipynb", "a": "' + b"x" * 100000 + b'"}',
    b'{"notebook": "simple.ipynb", "a": ' + b"[" * 64 + b"]" * 64 + b"}",
    b'{"notebook": "' + b"a/" * 3000 + b'x.ipynb"}',
    b'{"notebook": "' + b"x" * 5000 + b'.ipynb"}',
    b'{"notebook": "simple.ipynb", "output_path": "' + b"x" * 5000 + b'.ipynb"}',
]


@pytest.mark.parametrize("content_type", ["application/json", "application/x-www-form-urlencoded",
                                          "text/plain", "multipart/form-data; boundary=x"])
async def test_no_body_gets_a_500(jp_fetch, manager, content_type):
    bodies = [*BODIES, b"notebook=%ff", b"notebook=simple.ipynb&a=%ff",
              b"notebook=simple.ipynb&&&=",
              b"--x\r\nContent-Disposition: form-data; name=notebook\r\n\r\n\xff\r\n--x--\r\n"]
    for body in bodies:
        for path in (("api", "executions"), ("api", "executions", "no-such-id")):
            response = await jp_fetch(*path, method="POST", body=body, raise_error=False,
                                      headers={"Content-Type": content_type})
            assert response.code < 500, (body[:80], path, response.body[:300])
            if response.code >= 400:
                assert "message" in json.loads(response.body)
    await settle(manager)
    await manager.delete_all()


@pytest.mark.parametrize(
    "args, allow_hidden, message",
    [
        ({"notebook": "a.ipynb", "output_path": ".jupyter/evil.py"}, False, "must not be hidden"),
        ({"notebook": "a.ipynb", "output_path": ".jupyter/evil.py"}, True, "ending in .ipynb"),
        ({"notebook": "a.ipynb", "output_path": "a/./.b/c.ipynb"}, False, "'.b' starts with"),
        ({"notebook": ".a/a.ipynb"}, False, "notebook must not be hidden"),
        ({"notebook": "a.ipynb", "output_path": "o.IPYNB"}, False, "ending in .ipynb"),
        ({"notebook": "a.ipynb", "cell_timeout": 10**9 + 1}, False, "at most"),
    ],
)
def test_run_request_refusals(args, allow_hidden, message):
    with pytest.raises(BadRequest, match=message):
        parse_run_request(args, from_form=False, allow_hidden=allow_hidden)


def test_run_request_with_hidden_files_allowed():
    req = parse_run_request(
        {"notebook": ".a/a.ipynb", "output_path": ".b/o.ipynb", "cell_timeout": 10**9},
        from_form=False, allow_hidden=True,
    )
    assert (req.notebook, req.output_path, req.cell_timeout) == (".a/a.ipynb", ".b/o.ipynb", 10**9)


def test_parse_json_body_counts_the_top_object_as_the_first_level():
    assert parse_json_body(b"") == {}
    assert parse_json_body(b'{"a": ' + b"[" * 63 + b"]" * 63 + b"}")["a"]
    with pytest.raises(BadRequest, match="deeper than 64"):
        parse_json_body(b'{"a": ' + b"[" * 64 + b"]" * 64 + b"}")
