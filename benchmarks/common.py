"""Shared helpers of the benchmark scripts: run counts, statistics, notebooks, a Jupyter server.

Benchmarks are scripts, never tests: each measures and prints, none asserts a time.
``BENCH_QUICK=1`` shrinks every run count so CI can check that the scripts still work.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nbformat
import requests

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


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


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


def wait_for_http(url: str, timeout: float = 60.0, headers: dict[str, str] | None = None) -> None:
    """Poll a URL until it answers anything below 500."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            if requests.get(url, headers=headers, timeout=5).status_code < 500:
                return
        except requests.RequestException as exc:
            last = exc
        time.sleep(0.2)
    raise TimeoutError(f"{url} did not answer within {timeout}s ({last})")


def stop_process(proc: subprocess.Popen, timeout: float = 10.0) -> None:
    """Terminate a process we started (then kill it if it lingers)."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout)


@dataclass
class JupyterServer:
    """A plain ``jupyter server`` subprocess with the extension enabled."""

    url: str
    token: str
    root: Path
    proc: subprocess.Popen

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"token {self.token}"}


@contextlib.contextmanager
def jupyter_server(root: Path, *args: str) -> Iterator[JupyterServer]:
    """Start ``jupyter server`` on a free port serving ``root``; stop it afterwards."""
    port = free_port()
    token = secrets.token_hex(16)
    log = open(root.parent / f"jupyter-server-{port}.log", "wb")  # noqa: SIM115
    env = {k: v for k, v in os.environ.items() if not k.startswith("JUPYTERHUB_")}
    env["JUPYTER_RUNTIME_DIR"] = str(root.parent / f"runtime-{port}")
    proc = subprocess.Popen(
        [
            PYTHON, "-m", "jupyter_server", "--no-browser", "--allow-root",
            f"--ServerApp.port={port}", "--ServerApp.ip=127.0.0.1",
            f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}",
            "--ServerApp.port_retries=0", *args,
        ],
        stdout=log, stderr=subprocess.STDOUT, cwd=root, env=env,
    )
    server = JupyterServer(f"http://127.0.0.1:{port}", token, root, proc)
    try:
        wait_for_http(f"{server.url}/api/status", headers=server.headers)
        yield server
    finally:
        stop_process(proc)
        log.close()


def chp_path() -> str:
    """configurable-http-proxy from the repo's node_modules (the real one, pinned)."""
    local = REPO / "node_modules" / ".bin" / "configurable-http-proxy"
    if local.exists():
        return str(local)
    found = shutil.which("configurable-http-proxy")
    if not found:
        raise RuntimeError("configurable-http-proxy not found: run `npm install` (make bench does)")
    return found
