"""A server's memory across many finished executions (issue 13, contract A.6).

Runs a notebook that prints 200 KB (the output of a typical report cell) 1,000 times on
one ``jupyter server`` and prints the server's resident memory after the first 10 runs and
after all of them: with the execution store (the default: finished executions' events
leave memory and replay from disk) and, for comparison, with ``store_path = ""`` (every
log stays in memory, as before the store). Also prints the store's size on disk.
``BENCH_QUICK=1`` runs 60 executions instead.

Run alone, from the repository root: ``python -m benchmarks.bench_memory``.
"""

from __future__ import annotations

import json
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import nbformat
import psutil
import requests

from benchmarks import common
from tests.support.servers import JupyterServer, store_path

NAME = "memory"
FIRST = 10
#: executions running at once (each worker writes its own output file)
WORKERS = 2


def printing_notebook(size: int = 200_000) -> nbformat.NotebookNode:
    nb = common.trivial_notebook(2)
    nb.cells.append(nbformat.v4.new_code_cell(f"print('x' * {size})"))
    return nb


def run_once(server: JupyterServer, worker: int) -> None:
    """One chunked run, read to its final event."""
    data = {"notebook": "printing.ipynb", "output_path": f"out-{worker}.ipynb",
            "overwrite": "true"}
    headers = dict(server.headers, **{"X-Response-Encoding": "chunked"})
    resp = requests.post(f"{server.url}/api/executions", data=data, headers=headers, timeout=120)
    last = json.loads(resp.text.strip().splitlines()[-1])
    if last.get("event") != "notebook_complete":
        raise RuntimeError(f"execution did not complete: {str(last)[:300]}")


def run_many(server: JupyterServer, count: int) -> None:
    """``count`` runs, ``WORKERS`` at a time."""
    def worker(index: int) -> None:
        for _ in range(index, count, WORKERS):
            run_once(server, index)

    with ThreadPoolExecutor(WORKERS) as pool:
        for future in [pool.submit(worker, i) for i in range(WORKERS)]:
            future.result()


def rss_mb(pid: int) -> float:
    return psutil.Process(pid).memory_info().rss / 2**20


def folder_mb(path: Path) -> float:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 2**20


def measure(folder: Path, label: str, total: int, *args: str) -> common.Row:
    folder.mkdir(parents=True)
    common.write_notebook(printing_notebook(), folder / "printing.ipynb")
    with common.jupyter_server(folder, *args) as server:
        time.sleep(3)  # the kernel template starts 2 s after the server
        started = time.perf_counter()
        run_many(server, FIRST)
        time.sleep(1)  # the store's writer and the eviction of logs are done
        first = rss_mb(server.proc.pid)
        run_many(server, total - FIRST)
        time.sleep(1)
        last = rss_mb(server.proc.pid)
        seconds = time.perf_counter() - started
        listed = len(requests.get(f"{server.url}/api/executions", headers=server.headers,
                                  timeout=30).json()["executions"])
    store = store_path(folder)
    return common.Row(NAME, label, total, {
        f"rss_after_{FIRST}_mb": first,
        f"rss_after_{total}_mb": last,
        "growth_mb": last - first,
        "growth_per_run_kb": (last - first) * 1024 / (total - FIRST),
        "listed": listed,
        "store_on_disk_mb": folder_mb(store) if store.exists() else 0.0,
        "runs_per_s": total / seconds,
    })


def main(hub: object = None) -> list[common.Row]:
    """Both cases (``hub``, given by run_all, is not needed: a plain server is measured)."""
    total = max(FIRST + 1, common.runs(1000, 60))
    with tempfile.TemporaryDirectory(prefix="bench-memory-") as tmp:
        return [
            measure(Path(tmp) / "stored", "store (default)", total),
            measure(Path(tmp) / "memory", "memory only (store_path='')", total,
                    "--ExecutionExtensionApp.store_path="),
        ]


if __name__ == "__main__":
    common.print_rows("bench_memory: server RSS after many finished executions", main())
