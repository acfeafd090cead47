"""Unit tests of the extension's plain parts: parameters, paths, request parsing, limiter, log."""

from __future__ import annotations

import asyncio
import os

import nbformat
import pytest

from nbexec_hub.errors import BadRequest
from nbexec_hub.extension import naming
from nbexec_hub.extension.execution import Execution
from nbexec_hub.extension.limiter import FifoLimiter
from nbexec_hub.extension.naming import OutputReservations, normalize_api_path, to_os_path
from nbexec_hub.extension.parameters import (
    convert_form_value,
    convert_parameters,
    inject_parameters,
    injected_source,
    parse_parameters_source,
)
from nbexec_hub.extension.request import parse_run_request

SOURCE = '''n = 1  # an int
x: float = 0.5  # a float
flag = False
text = "abc"  # the text
items = [1, 2]
mapping = {"k": 1}
pair = (1, 2)
nothing = None
when = len("today")  # not a literal
'''


def test_declared_parameters_names_defaults_types_help():
    params = {p.name: p for p in parse_parameters_source(SOURCE)}
    assert list(params) == ["n", "x", "flag", "text", "items", "mapping", "pair", "nothing", "when"]
    assert params["n"].to_json() == {"name": "n", "default": "1", "type": "int", "help": "an int"}
    assert params["x"].type == "float" and params["x"].help == "a float"
    assert params["text"].default == '"abc"' and params["text"].help == "the text"
    assert params["flag"].help is None
    assert params["when"].type is None and params["when"].default == 'len("today")'
    assert params["nothing"].type == "NoneType"


def test_parameters_cell_with_a_syntax_error_is_a_bad_request():
    with pytest.raises(BadRequest, match="not valid Python"):
        parse_parameters_source("a = (")


@pytest.mark.parametrize(
    "value, kind, expected",
    [
        ("42", "int", 42),
        (" -3 ", "int", -3),
        ("2.5", "float", 2.5),
        ("1e3", "float", 1000.0),
        ("TRUE", "bool", True),
        ("yes", "bool", True),
        ("1", "bool", True),
        ("No", "bool", False),
        ("0", "bool", False),
        ("false", "bool", False),
        ("  spaced  ", "str", "  spaced  "),
        ("[1, 'a']", "list", [1, "a"]),
        ('{"a": [1]}', "dict", {"a": [1]}),
        ("(1, 2)", "tuple", (1, 2)),
        ("[1, 2]", "tuple", (1, 2)),
        ("5", "NoneType", 5),
        ("plain words", "NoneType", "plain words"),
        ("anything", None, "anything"),
    ],
)
def test_form_values_converted_to_the_declared_type(value, kind, expected):
    from nbexec_hub.extension.parameters import Parameter

    declared = Parameter("p", "x", kind, None)
    result = convert_form_value("p", value, declared)
    assert result == expected and type(result) is type(expected)


@pytest.mark.parametrize(
    "value, kind",
    [("abc", "int"), ("1.5", "int"), ("x", "float"), ("maybe", "bool"), ("[1,", "list"),
     ("{1: 2}", "list"), ("__import__('os')", "dict")],
)
def test_unconvertible_form_values_are_bad_requests(value, kind):
    from nbexec_hub.extension.parameters import Parameter

    with pytest.raises(BadRequest, match="'p'"):
        convert_form_value("p", value, Parameter("p", "x", kind, None))


def test_parameter_names_must_be_identifiers():
    with pytest.raises(BadRequest, match="identifier"):
        convert_parameters({"a b": "1"}, [], from_form=True)
    with pytest.raises(BadRequest, match="identifier"):
        convert_parameters({"class": "1"}, [], from_form=True)


def test_json_values_keep_their_types():
    values = convert_parameters({"n": 3, "s": "3", "l": [1, {"a": None}]}, [], from_form=False)
    assert values == {"n": 3, "s": "3", "l": [1, {"a": None}]}


@pytest.mark.parametrize(
    "hostile",
    [
        "'; import os #",
        "\"; import os #",
        "'''\nimport os\n'''",
        "\\",
        "x\ny = 1",
        "{{ x }} %s {0}",
        "\x00\u2028\ud7ff",
    ],
)
def test_injected_code_keeps_any_string_a_string(hostile):
    source = injected_source({"value": hostile, "n": float("nan"), "t": (1,), "inf": float("-inf")})
    namespace: dict = {}
    exec(compile(source, "<injected>", "exec"), {"__builtins__": {"float": float}}, namespace)
    assert namespace["value"] == hostile
    assert namespace["t"] == (1,)
    assert namespace["inf"] == float("-inf")
    assert "os" not in namespace


def test_injection_goes_after_the_parameters_cell_or_on_top():
    nb = nbformat.v4.new_notebook(
        cells=[nbformat.v4.new_markdown_cell("m"), nbformat.v4.new_code_cell("a = 1")]
    )
    nb.cells[1].metadata["tags"] = ["parameters"]
    inject_parameters(nb, {"a": 2})
    assert nb.cells[2].metadata["tags"] == ["injected-parameters"]
    assert nb.cells[2].source == "# Parameters\na = 2\n"
    inject_parameters(nb, {"a": 3})  # a second injection replaces the first
    assert [c.source for c in nb.cells].count("# Parameters\na = 3\n") == 1
    assert len(nb.cells) == 3
    plain = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("print(a)")])
    inject_parameters(plain, {"a": "x"})
    assert plain.cells[0].metadata["tags"] == ["injected-parameters"]


@pytest.mark.parametrize("bad", ["/etc/passwd", "../x.ipynb", "a/../../x.ipynb", "", "  ", "."])
def test_paths_outside_the_root_are_refused(bad):
    with pytest.raises(BadRequest):
        normalize_api_path(bad, "notebook")


def test_paths_are_normalized():
    assert normalize_api_path("a/./b//c.ipynb", "notebook") == "a/b/c.ipynb"


def test_symlink_out_of_the_root_is_refused(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    (tmp_path / "outside.ipynb").write_text("{}")
    os.symlink(tmp_path / "outside.ipynb", root / "link.ipynb")
    with pytest.raises(BadRequest, match="outside"):
        to_os_path(str(root), "link.ipynb", "notebook")


async def test_numbered_reservations_never_collide(tmp_path):
    nb_path = str(tmp_path / "nb.ipynb")
    (tmp_path / "nb-Executed1.ipynb").write_text("{}")
    reservations = OutputReservations()
    names = await asyncio.gather(
        *(reservations.reserve_numbered(nb_path, b'{"cells": []}') for _ in range(3))
    )
    assert sorted(os.path.basename(n) for n in names) == [
        "nb-Executed2.ipynb", "nb-Executed3.ipynb", "nb-Executed4.ipynb"
    ]
    assert all(open(n).read() == '{"cells": []}' for n in names)  # whole, never partial
    assert not [f for f in os.listdir(tmp_path) if f.endswith(".tmp")]
    reservations.release(names[0])
    # the file itself still exists, so the name stays taken
    name = await reservations.reserve_numbered(nb_path, b"{}")
    assert os.path.basename(name) == "nb-Executed5.ipynb"


async def test_numbered_reservation_takes_the_smallest_free_number(tmp_path, monkeypatch):
    """The folder is listed once: gaps are filled, look-alike names do not count, and a
    dangling link or a folder with the name keeps the number taken."""
    nb_path = str(tmp_path / "nb.ipynb")
    for name in ("nb-Executed1.ipynb", "nb-Executed3.ipynb", "nb-Executed02.ipynb",
                 "nb-Executed².ipynb", "other-Executed2.ipynb", "nb-Executed2.ipynb.tmp"):
        (tmp_path / name).write_text("{}")
    reservations = OutputReservations()
    first = await reservations.reserve_numbered(nb_path, b"{}")
    assert os.path.basename(first) == "nb-Executed2.ipynb"
    (tmp_path / "nb-Executed4.ipynb").symlink_to(tmp_path / "gone")
    (tmp_path / "nb-Executed5.ipynb").mkdir()
    names = [await reservations.reserve_numbered(nb_path, b"{}") for _ in range(2)]
    assert [os.path.basename(n) for n in names] == ["nb-Executed6.ipynb", "nb-Executed7.ipynb"]
    # a name taken between the listing and the creation (another process) is skipped
    real_numbers_taken = naming._numbers_taken

    def stale(notebook_os_path):
        taken = real_numbers_taken(notebook_os_path)
        (tmp_path / "nb-Executed8.ipynb").write_text("theirs")
        return taken
    monkeypatch.setattr(naming, "_numbers_taken", stale)
    late = await reservations.reserve_numbered(nb_path, b"{}")
    assert os.path.basename(late) == "nb-Executed9.ipynb"
    assert (tmp_path / "nb-Executed8.ipynb").read_text() == "theirs"


async def test_numbered_reservation_in_a_folder_that_cannot_be_listed(tmp_path, monkeypatch):
    """Write and search permission without read (a drop-box folder): names are probed."""
    (tmp_path / "nb-Executed1.ipynb").write_text("{}")

    def refused(path):
        raise PermissionError(13, "Permission denied", path)

    monkeypatch.setattr(naming.os, "scandir", refused)
    name = await OutputReservations().reserve_numbered(str(tmp_path / "nb.ipynb"), b"{}")
    assert os.path.basename(name) == "nb-Executed2.ipynb"


async def test_exact_reservation_respects_overwrite(tmp_path):
    reservations = OutputReservations()
    target = tmp_path / "out.ipynb"
    target.write_text("{}")
    with pytest.raises(BadRequest, match="already exists"):
        await reservations.reserve_exact(str(target), "out.ipynb", False, b"{}")
    await reservations.reserve_exact(str(target), "out.ipynb", True, b"{}")
    with pytest.raises(BadRequest, match="another execution"):
        await reservations.reserve_exact(str(target), "out.ipynb", True, b"{}")
    with pytest.raises(BadRequest, match="folder"):
        await reservations.reserve_exact(str(tmp_path / "no" / "x.ipynb"), "no/x.ipynb", False, b"")


@pytest.mark.parametrize(
    "args, message",
    [
        ({}, "notebook parameter is required"),
        ({"notebook": "a.ipynb", "overwrite": "true"}, "needs an output_path"),
        ({"notebook": "a.ipynb", "overwrite": "sometimes"}, "overwrite"),
        ({"notebook": "a.ipynb", "cell_timeout": "0"}, "positive integer"),
        ({"notebook": "a.ipynb", "cell_timeout": "-1"}, "positive integer"),
        ({"notebook": "a.ipynb", "cell_timeout": "1.5"}, "positive integer"),
        ({"notebook": "a.ipynb", "cell_timeout": "soon"}, "positive integer"),
        ({"notebook": "../a.ipynb"}, "inside the server root"),
        ({"notebook": "/a.ipynb"}, "absolute"),
        ({"notebook": "a.ipynb", "output_path": "../b.ipynb"}, "inside the server root"),
    ],
)
def test_run_request_errors(args, message):
    with pytest.raises(BadRequest, match=message):
        parse_run_request(args, from_form=True)


def test_run_request_splits_reserved_and_notebook_parameters():
    req = parse_run_request(
        {"notebook": "a.ipynb", "output_path": "o.ipynb", "overwrite": "YES",
         "cell_timeout": "5", "jupyter_kernel": "python3", "x": "1"},
        from_form=True,
    )
    assert (req.notebook, req.output_path, req.overwrite) == ("a.ipynb", "o.ipynb", True)
    assert (req.cell_timeout, req.jupyter_kernel, req.params) == (5, "python3", {"x": "1"})


async def test_limiter_serves_waiters_in_order():
    limiter = FifoLimiter(1)
    assert limiter.try_acquire()
    order: list[int] = []

    async def waiter(i: int) -> None:
        await limiter.acquire()
        order.append(i)
        limiter.release()

    tasks = [asyncio.ensure_future(waiter(i)) for i in range(5)]
    await asyncio.sleep(0)
    tasks[2].cancel()  # a cancelled waiter gives its turn away
    await asyncio.sleep(0)
    assert not limiter.try_acquire()  # nobody jumps the queue
    limiter.release()
    await asyncio.gather(*tasks, return_exceptions=True)
    assert order == [0, 1, 3, 4]
    assert limiter.active == 0


async def test_event_log_is_bounded_but_keeps_the_first_event():
    ex = Execution(path="a", params={}, output_path=None, overwrite=False,
                   jupyter_kernel=None, cell_timeout=None, max_events=3)
    ex.emit("notebook_start", execution=ex.model())
    for _ in range(5):
        ex.emit("start", progress="1/1", cell={})
    ex.finish("completed")
    kept = ex.events_since(0)
    assert [seq for seq, _ in kept] == [0, 5, 6]
    assert [e["event"] for _, e in kept] == ["notebook_start", "start", "notebook_complete"]
    assert list(kept[0][1]) == ["event", "timestamp", "execution"]
    with pytest.raises(RuntimeError):
        ex.emit("start")


async def test_unused_placeholders_are_removed_but_never_a_users_file(tmp_path):
    reservations = OutputReservations()
    name = await reservations.reserve_numbered(str(tmp_path / "nb.ipynb"), b"{}")
    assert os.path.exists(name)
    reservations.release(name, written=False)
    assert not os.path.exists(name)
    users = tmp_path / "mine.ipynb"
    users.write_text("{}")
    await reservations.reserve_exact(str(users), "mine.ipynb", True, b"{}")
    reservations.release(str(users), written=False)
    assert users.read_text() == "{}"
    # a placeholder someone changed meanwhile is theirs now
    name = await reservations.reserve_numbered(str(tmp_path / "nb.ipynb"), b"{}")
    with open(name, "w") as f:
        f.write('{"changed": true}')
    reservations.release(name, written=False)
    assert os.path.exists(name)
