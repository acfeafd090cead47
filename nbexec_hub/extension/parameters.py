"""Notebook parameters: what the ``parameters`` cell declares, typed conversion, injection.

Following papermill's convention, the cell tagged ``parameters`` declares them and a cell
tagged ``injected-parameters`` is inserted after it. The injected code is built only from
Python literals rendered with ``repr()``, so no value can ever become code.
"""

from __future__ import annotations

import ast
import io
import keyword
import math
import tokenize
from dataclasses import asdict, dataclass
from typing import Any

import nbformat
from nbformat import NotebookNode

from .. import protocol
from ..errors import BadRequest

PARAMETERS_TAG = "parameters"
INJECTED_TAG = "injected-parameters"



@dataclass
class Parameter:
    """One declared parameter: its name, default (source text), type name and help."""

    name: str
    default: str
    type: str | None
    help: str | None

    def to_json(self) -> dict[str, Any]:
        """The parameter as in ``GET /api/executions/parameters``."""
        return asdict(self)


def parse_bool(value: str, what: str) -> bool:
    """One of protocol's true or false words (``true/false/1/0/yes/no/on/off``), any case."""
    parsed = protocol.parse_bool(value)
    if parsed is None:
        pairs = zip(protocol.TRUE_WORDS, protocol.FALSE_WORDS, strict=False)
        words = "/".join(w for pair in pairs for w in pair)
        raise BadRequest(f"{what} must be one of {words}, not {value!r}")
    return parsed


def _cell_tags(cell: NotebookNode) -> list[str]:
    tags = cell.get("metadata", {}).get("tags", [])
    return tags if isinstance(tags, list) else []


def find_cell(nb: NotebookNode, tag: str) -> int | None:
    """The index of the first cell carrying ``tag``."""
    for index, cell in enumerate(nb.cells):
        if tag in _cell_tags(cell):
            return index
    return None


def _trailing_comments(source: str) -> dict[int, str]:
    """Comment text by line number."""
    comments: dict[int, str] = {}
    try:
        for tok in tokenize.generate_tokens(io.StringIO(source).readline):
            if tok.type == tokenize.COMMENT:
                comments[tok.start[0]] = tok.string.lstrip("#").strip()
    except (tokenize.TokenError, SyntaxError):
        pass
    return comments


def _type_name(node: ast.AST, annotation: ast.AST | None) -> str | None:
    try:
        return type(ast.literal_eval(node)).__name__
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        pass
    if isinstance(annotation, ast.Name):
        return annotation.id
    return None


def parse_parameters_source(source: str) -> list[Parameter]:
    """The assignments of a parameters cell, in order."""
    try:
        tree = ast.parse(source)
    except SyntaxError as exc:
        raise BadRequest(
            f"the parameters cell is not valid Python: {exc.msg} (line {exc.lineno})"
        ) from None
    comments = _trailing_comments(source)
    found: dict[str, Parameter] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign):
            targets = [t.id for t in node.targets if isinstance(t, ast.Name)]
            value, annotation = node.value, None
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value:
            targets = [node.target.id]
            value, annotation = node.value, node.annotation
        else:
            continue
        default = ast.get_source_segment(source, value) or ""
        help_text = comments.get(node.end_lineno or node.lineno) or None
        for name in targets:
            found.pop(name, None)
            found[name] = Parameter(name, default, _type_name(value, annotation), help_text)
    return list(found.values())


def declared_parameters(nb: NotebookNode) -> list[Parameter]:
    """The parameters declared by a notebook (none without a ``parameters`` cell)."""
    index = find_cell(nb, PARAMETERS_TAG)
    if index is None:
        return []
    return parse_parameters_source(nb.cells[index].source)


def _literal(value: str, name: str) -> Any:
    try:
        return ast.literal_eval(value.strip())
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        raise BadRequest(f"parameter {name!r}: {value!r} is not a Python literal") from None


def convert_form_value(name: str, value: str, declared: Parameter | None) -> Any:
    """A form string converted to the type of the declared default (A.4)."""
    kind = declared.type if declared else None
    if kind in (None, "str"):
        return value
    if kind == "bool":
        return parse_bool(value, f"parameter {name!r}")
    if kind == "int":
        try:
            return int(value.strip())
        except ValueError:
            raise BadRequest(f"parameter {name!r} must be an int, not {value!r}") from None
    if kind == "float":
        try:
            return float(value.strip())
        except ValueError:
            raise BadRequest(f"parameter {name!r} must be a float, not {value!r}") from None
    if kind == "NoneType":
        try:
            return ast.literal_eval(value.strip())
        except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
            return value
    parsed = _literal(value, name)
    if type(parsed).__name__ != kind:
        if kind == "tuple" and isinstance(parsed, list):
            return tuple(parsed)
        raise BadRequest(
            f"parameter {name!r} must be a {kind} literal, not {type(parsed).__name__}: {value!r}"
        )
    return parsed


def convert_parameters(
    params: dict[str, Any], declared: list[Parameter], *, from_form: bool
) -> dict[str, Any]:
    """The values to inject: form strings converted, JSON values kept as they are."""
    by_name = {p.name: p for p in declared}
    values: dict[str, Any] = {}
    for name, value in params.items():
        if not name.isidentifier() or keyword.iskeyword(name):
            raise BadRequest(f"parameter name {name!r} is not a Python identifier")
        if from_form and isinstance(value, str):
            values[name] = convert_form_value(name, value, by_name.get(name))
        else:
            render_literal(value, name)  # refuse what cannot be written as a literal
            values[name] = value
    return values


def render_literal(value: Any, name: str = "value") -> str:
    """Python source that evaluates to ``value``, built from ``repr`` of literals only."""
    if value is None or isinstance(value, (bool, int, str)):
        return repr(value)
    if isinstance(value, float):
        if math.isfinite(value):
            return repr(value)
        return f"float({repr(value)!r})"
    if isinstance(value, list):
        return "[" + ", ".join(render_literal(v, name) for v in value) + "]"
    if isinstance(value, tuple):
        inner = ", ".join(render_literal(v, name) for v in value)
        return "(" + inner + ("," if len(value) == 1 else "") + ")"
    if isinstance(value, dict):
        items = (f"{render_literal(k, name)}: {render_literal(v, name)}" for k, v in value.items())
        return "{" + ", ".join(items) + "}"
    raise BadRequest(f"parameter {name!r}: a {type(value).__name__} cannot be injected")


def injected_source(values: dict[str, Any]) -> str:
    """The source of the injected-parameters cell."""
    lines = ["# Parameters"]
    lines.extend(f"{name} = {render_literal(value, name)}" for name, value in values.items())
    return "\n".join(lines) + "\n"


def inject_parameters(nb: NotebookNode, values: dict[str, Any]) -> None:
    """Insert the injected-parameters cell after the parameters cell (or at the top)."""
    previous = find_cell(nb, INJECTED_TAG)
    if previous is not None:
        del nb.cells[previous]
    if not values:
        return
    cell = nbformat.v4.new_code_cell(injected_source(values))
    cell.metadata["tags"] = [INJECTED_TAG]
    anchor = find_cell(nb, PARAMETERS_TAG)
    nb.cells.insert(0 if anchor is None else anchor + 1, cell)
