"""Shared helpers of the benchmark scripts: run counts, statistics, notebooks, a Jupyter server.

`jupyter_server` (a ``jupyter server`` subprocess on a free port) comes from
tests/support/servers.py.

Benchmarks are scripts, never tests: each measures and prints, none asserts a time.
``BENCH_QUICK=1`` shrinks every run count so CI can check that the scripts still work.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import statistics
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nbformat

# the tests' server helpers: a `jupyter server` subprocess started the same way as in tests
from tests.support.servers import jupyter_server  # noqa: F401  (bench_execute uses it)

REPO = Path(__file__).resolve().parent.parent

#: the interpreter of the project's venv (benchmarks start servers with it)
PYTHON = sys.executable
BIN = Path(PYTHON).parent
KERNELSPEC = {"name": "python3", "display_name": "Python 3", "language": "python"}


def quick() -> bool:
    """Whether the short CI mode (``BENCH_QUICK=1``) is on."""
    return os.environ.get("BENCH_QUICK", "") not in ("", "0", "false", "no")


def runs(full: int, short: int) -> int:
    """A run count: ``full`` normally, ``short`` in quick mode; ``BENCH_RUNS`` overrides both."""
    if os.environ.get("BENCH_RUNS"):
        return int(os.environ["BENCH_RUNS"])
    return short if quick() else full


def percentile(values: Sequence[float], pct: float) -> float:
    """The nearest-rank percentile (pct in 0..100) of a non-empty sequence."""
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * pct // 100))  # ceil without floats
    return ordered[int(rank) - 1]


@dataclass
class Row:
    """One line of a result table."""

    bench: str
    case: str
    n: int
    values: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def timings(cls, bench: str, case: str, seconds: Sequence[float], **extra: Any) -> Row:
        """A row with median, p90 and p99 of wall times in seconds."""
        values = {
            "median_s": statistics.median(seconds),
            "p90_s": percentile(seconds, 90),
            "p99_s": percentile(seconds, 99),
        }
        values.update(extra)
        return cls(bench, case, len(seconds), values)


def format_value(value: Any) -> str:
    """Numbers with a sensible number of digits, everything else as text."""
    if isinstance(value, float):
        if value >= 100:
            return f"{value:.0f}"
        if value >= 1:
            return f"{value:.2f}"
        return f"{value:.4f}"
    return str(value)


def format_table(rows: Sequence[Row]) -> str:
    """A Markdown table of rows (columns: the union of their values, in first-seen order)."""
    columns: list[str] = []
    for row in rows:
        for key in row.values:
            if key not in columns:
                columns.append(key)
    header = ["bench", "case", "n", *columns]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        cells = [row.bench, row.case, str(row.n)]
        cells += [format_value(row.values[c]) if c in row.values else "" for c in columns]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def machine() -> str:
    """One line describing the machine the numbers come from."""
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = ""
    with contextlib.suppress(OSError, ValueError, IndexError):
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f", {kb / 1024 / 1024:.0f} GiB RAM"
    return (
        f"{os.cpu_count()} cores ({cpu}){mem}, {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}"
    )


def print_rows(title: str, rows: Sequence[Row]) -> None:
    """Print one benchmark's rows under a heading, then as a JSON line for tools."""
    print(f"\n## {title}\n")
    print(format_table(rows))
    print("\nJSON " + json.dumps([r.__dict__ for r in rows]))
    sys.stdout.flush()


def trivial_notebook(cells: int = 10) -> nbformat.NotebookNode:
    """The benchmark notebook: a parameters cell, then ``cells - 1`` trivial code cells."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = KERNELSPEC
    params = nbformat.v4.new_code_cell("x = 1")
    params.metadata["tags"] = ["parameters"]
    nb.cells.append(params)
    for i in range(1, cells):
        nb.cells.append(nbformat.v4.new_code_cell(f"y{i} = x + {i}\ny{i}"))
    return nb


def slow_notebook(cells: int, seconds: float) -> nbformat.NotebookNode:
    """A notebook whose cells each sleep, so that it emits events at a steady pace."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = KERNELSPEC
    nb.cells.append(nbformat.v4.new_code_cell("import time"))
    for i in range(cells - 1):
        nb.cells.append(nbformat.v4.new_code_cell(f"time.sleep({seconds})\n{i}"))
    return nb


def write_notebook(nb: nbformat.NotebookNode, path: Path) -> Path:
    """Write a notebook file and return its path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, str(path))
    return path
