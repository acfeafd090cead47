"""Wall time to run one 10-cell trivial notebook, each way it can be run.

papermill's CLI, ``jupyter execute``, nbclient in-process, the Execution API straight on a
Jupyter server (chunked POST until the final event), and the same through the hub service
behind configurable-http-proxy. Prints median and p90 and each median's ratio to papermill's.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import nbformat
import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402
import hubenv  # noqa: E402

NAME = "execute"


def time_runs(n: int, once: Callable[[int], None], warmup: int = 1) -> list[float]:
    """Wall times of ``n`` calls of ``once(i)``, after ``warmup`` untimed calls."""
    for i in range(warmup):
        once(-1 - i)
    times = []
    for i in range(n):
        start = time.perf_counter()
        once(i)
        times.append(time.perf_counter() - start)
    return times


def run_papermill(folder: Path, nb: Path) -> Callable[[int], None]:
    def once(i: int) -> None:
        subprocess.run(
            [str(common.BIN / "papermill"), "--log-level", "WARNING", "--no-progress-bar",
             str(nb), str(folder / "out-papermill.ipynb")],
            check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
    return once


def run_jupyter_execute(folder: Path, nb: Path) -> Callable[[int], None]:
    def once(i: int) -> None:
        subprocess.run(
            [str(common.BIN / "jupyter-execute"), str(nb), "--output=out-jupyter-execute"],
            check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=folder,
        )
    return once


def run_nbclient(folder: Path, nb: Path) -> Callable[[int], None]:
    from nbclient import NotebookClient

    def once(i: int) -> None:
        notebook = nbformat.read(str(nb), as_version=4)
        NotebookClient(notebook, resources={"metadata": {"path": str(folder)}}).execute()
        nbformat.write(notebook, str(folder / "out-nbclient.ipynb"))
    return once


def post_chunked(url: str, headers: dict[str, str], data: dict[str, str]) -> dict:
    """POST an execution with the chunked header and read events until the final one."""
    headers = {**headers, "X-Response-Encoding": "chunked"}
    with requests.post(url, data=data, headers=headers, stream=True, timeout=120) as resp:
        if resp.status_code != 202:
            raise RuntimeError(f"POST {url}: {resp.status_code} {resp.text[:300]}")
        last: dict = {}
        for line in resp.iter_lines():
            if line.strip():
                last = json.loads(line)
        if last.get("event") != "notebook_complete":
            raise RuntimeError(f"execution did not complete: {str(last)[:300]}")
        return last


def run_extension(base_url: str, headers: dict[str, str], notebook: str) -> Callable[[int], None]:
    def once(i: int) -> None:
        post_chunked(
            f"{base_url}/api/executions", headers,
            {"notebook": notebook, "output_path": "out-extension.ipynb", "overwrite": "true"},
        )
    return once


def run_service(hub: hubenv.Hub, user: hubenv.HubUser, notebook: str) -> Callable[[int], None]:
    url = f"{hub.url}/services/nbexec/api/users/{user.name}/executions"

    def once(i: int) -> None:
        post_chunked(
            url, user.headers,
            {"notebook": notebook, "output_path": "out-service.ipynb", "overwrite": "true"},
        )
    return once


def main(hub: hubenv.Hub | None = None) -> list[common.Row]:
    n = common.runs(20, 3)
    rows: list[common.Row] = []
    with tempfile.TemporaryDirectory(prefix="bench-execute-") as tmp:
        folder = Path(tmp) / "root"
        nb = common.write_notebook(common.trivial_notebook(10), folder / "trivial.ipynb")
        timings: dict[str, list[float]] = {}
        timings["papermill CLI"] = time_runs(n, run_papermill(folder, nb))
        timings["jupyter execute"] = time_runs(n, run_jupyter_execute(folder, nb))
        timings["nbclient in-process"] = time_runs(n, run_nbclient(folder, nb))
        with common.jupyter_server(folder) as server:
            timings["extension, chunked POST"] = time_runs(
                n, run_extension(server.url, server.headers, "trivial.ipynb")
            )
        with hubenv.maybe_hub(hub, users=1) as running:
            user = running.users[0]
            running.put_notebook(user, "trivial.ipynb", common.trivial_notebook(10))
            timings["hub service via CHP"] = time_runs(
                n, run_service(running, user, "trivial.ipynb")
            )
    ref = statistics.median(timings["papermill CLI"])
    for case, seconds in timings.items():
        row = common.Row.timings(NAME, case, seconds)
        row.values.pop("p99_s")
        row.values["x_papermill"] = row.values["median_s"] / ref
        rows.append(row)
    return rows


if __name__ == "__main__":
    common.print_rows("bench_execute: 10-cell trivial notebook, wall time per run", main())
