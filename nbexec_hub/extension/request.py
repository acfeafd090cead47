"""What a ``POST /api/executions`` asks for: reserved parameters split from notebook ones."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

from ..errors import BadRequest
from ..protocol import RESERVED_PARAMS as RESERVED
from .naming import check_output_path, normalize_api_path, refuse_hidden
from .parameters import parse_bool

#: how deep a JSON body may nest (parameter values are rarely more than a level or two)
MAX_JSON_DEPTH = 64
#: the longest cell timeout, in seconds (about 31 years: no timeout, in effect)
MAX_CELL_TIMEOUT = 10**9


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON (only finite numbers are)")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"the number {text[:40]} is out of range")
    return value


def _check_nesting(data: Any, max_depth: int) -> None:
    """Refuse containers nested deeper than ``max_depth`` and strings that are not Unicode
    text (lone surrogates from ``\\ud800`` escapes cannot be written to any file)."""
    stack = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, str):
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                raise BadRequest(
                    "the JSON body holds a lone surrogate (\\ud800-\\udfff), not text"
                ) from None
            continue
        if not isinstance(value, (dict, list)):
            continue
        if depth > max_depth:
            raise BadRequest(f"the JSON body nests deeper than {max_depth} levels")
        items = [*value.keys(), *value.values()] if isinstance(value, dict) else value
        stack.extend((item, depth + 1) for item in items)


def parse_json_body(body: bytes, max_depth: int = MAX_JSON_DEPTH) -> dict[str, Any]:
    """A request's JSON object, strictly: no NaN/Infinity, bounded nesting, UTF-8 text.

    Python's ``json`` takes ``NaN``, ``Infinity`` and ``1e999`` (as inf), which then break
    every strict JSON reader of the execution list (browsers' ``JSON.parse``).
    """
    try:
        data = json.loads(body or b"{}", parse_constant=_no_constant, parse_float=_finite)
    except RecursionError:
        raise BadRequest(f"the JSON body nests deeper than {max_depth} levels") from None
    except ValueError as exc:  # UnicodeDecodeError included
        raise BadRequest(f"the JSON body does not parse: {exc}") from None
    _check_nesting(data, max_depth)
    if not isinstance(data, dict):
        raise BadRequest("the JSON body must be an object")
    return data


@dataclass
class RunRequest:
    """A validated run request (paths normalized, types checked)."""

    notebook: str
    output_path: str | None = None
    overwrite: bool = False
    jupyter_kernel: str | None = None
    cell_timeout: int | None = None
    params: dict[str, Any] = field(default_factory=dict)
    #: whether parameter values are form strings (converted) or JSON values (kept)
    from_form: bool = True


def _text(args: dict[str, Any], name: str) -> str | None:
    value = args.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise BadRequest(f"{name} must be a string")
    return value.strip() or None


def _overwrite(value: Any) -> bool:
    if value is None or value == "":
        return False
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        return parse_bool(value, "overwrite")
    raise BadRequest("overwrite must be true/false/1/0/yes/no")


def _cell_timeout(value: Any) -> int | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise BadRequest("cell_timeout must be a positive integer (seconds)")
    if isinstance(value, str):
        try:
            value = int(value.strip())
        except ValueError:
            raise BadRequest(
                f"cell_timeout must be a positive integer (seconds), not {value!r}"
            ) from None
    if not isinstance(value, int) or value <= 0:
        raise BadRequest(f"cell_timeout must be a positive integer (seconds), not {value!r}")
    if value > MAX_CELL_TIMEOUT:  # beyond a float's range nbclient's deadline overflows
        raise BadRequest(f"cell_timeout must be at most {MAX_CELL_TIMEOUT} seconds")
    return value


def parse_run_request(
    args: dict[str, Any], *, from_form: bool, allow_hidden: bool = False
) -> RunRequest:
    """Split and check the arguments of a run request (A.3), before touching any file.

    ``allow_hidden`` is the server's ``ContentsManager.allow_hidden``: without it neither
    the notebook nor the output may be hidden (a default output sits next to its notebook).
    """
    notebook = _text(args, "notebook")
    if notebook is None:
        raise BadRequest("the notebook parameter is required (a path relative to the root)")
    notebook = normalize_api_path(notebook, "notebook")
    refuse_hidden(notebook, "notebook", allow_hidden=allow_hidden)
    output_path = _text(args, "output_path")
    overwrite = _overwrite(args.get("overwrite"))
    if overwrite and output_path is None:
        raise BadRequest("overwrite=true needs an output_path")
    if output_path is not None:
        output_path = normalize_api_path(output_path, "output_path")
        check_output_path(output_path, allow_hidden=allow_hidden)
    return RunRequest(
        notebook=notebook,
        output_path=output_path,
        overwrite=overwrite,
        jupyter_kernel=_text(args, "jupyter_kernel"),
        cell_timeout=_cell_timeout(args.get("cell_timeout")),
        params={k: v for k, v in args.items() if k not in RESERVED},
        from_form=from_form,
    )
