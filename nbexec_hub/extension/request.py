"""What a ``POST /api/executions`` asks for: reserved parameters split from notebook ones."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..errors import BadRequest
from .naming import normalize_api_path
from .parameters import parse_bool

RESERVED = ("notebook", "output_path", "overwrite", "jupyter_kernel", "cell_timeout")


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
    return value


def parse_run_request(args: dict[str, Any], *, from_form: bool) -> RunRequest:
    """Split and check the arguments of a run request (A.3), before touching any file."""
    notebook = _text(args, "notebook")
    if notebook is None:
        raise BadRequest("the notebook parameter is required (a path relative to the root)")
    output_path = _text(args, "output_path")
    overwrite = _overwrite(args.get("overwrite"))
    if overwrite and output_path is None:
        raise BadRequest("overwrite=true needs an output_path")
    return RunRequest(
        notebook=normalize_api_path(notebook, "notebook"),
        output_path=None if output_path is None else normalize_api_path(output_path, "output_path"),
        overwrite=overwrite,
        jupyter_kernel=_text(args, "jupyter_kernel"),
        cell_timeout=_cell_timeout(args.get("cell_timeout")),
        params={k: v for k, v in args.items() if k not in RESERVED},
        from_form=from_form,
    )
