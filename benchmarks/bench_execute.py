"""Wall time to run one 10-cell trivial notebook, each way it can be run.

papermill's CLI, ``jupyter execute``, nbclient in-process, the Execution API straight on a
Jupyter server (chunked POST until the final event), and the same through the hub service
behind configurable-http-proxy; the last two with each source of kernels: forked from the
template with a spare waiting (the defaults), forked without a spare, and spawned (cold).
Prints median and p90, each one's speed-up over papermill's median, and how many runs got
a spare kernel. Runs follow each other with no pause, as a script looping over parameters
does; ``BENCH_PAUSE=1.5`` leaves a pause between runs.

Run alone, from the repository root: ``python -m benchmarks.bench_execute``.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import nbformat
import requests

from benchmarks import common, hubenv

NAME = "execute"


#: untimed pause between runs (0: back to back, what a script looping over parameters does)
PAUSE = float(os.environ.get("BENCH_PAUSE", "0"))
#: the extension's kernel sources compared, as server arguments (hubenv.SERVER_ARGS)
SOURCES = (
    ("spare", hubenv.SPARE_SERVER),
    ("forked, no spare", hubenv.FORKED_SERVER),
    ("cold", hubenv.COLD_SERVER),
)


class Case:
    """One way of running the notebook: a callable per run, and spare-kernel hits seen."""

    def __init__(self, once: Callable[[], dict | None]) -> None:
        self.once = once
        self.warm_hits = 0
        self.remote = False

    def run(self, n: int) -> list[float]:
        """Wall times of ``n`` runs, after one untimed warm-up run."""
        self.once()
        times = []
        for _ in range(n):
            time.sleep(PAUSE)
            start = time.perf_counter()
            final = self.once()
            times.append(time.perf_counter() - start)
            if final is not None:
                self.remote = True
                self.warm_hits += bool(final["execution"].get("warm_kernel"))
        return times


def papermill(folder: Path, nb: Path) -> Case:
    def once() -> None:
        subprocess.run(
            [str(common.BIN / "papermill"), "--log-level", "WARNING", "--no-progress-bar",
             str(nb), str(folder / "out-papermill.ipynb")],
            check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
    return Case(once)


def jupyter_execute(folder: Path, nb: Path) -> Case:
    def once() -> None:
        subprocess.run(
            [str(common.BIN / "jupyter-execute"), str(nb), "--output=out-jupyter-execute"],
            check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=folder,
        )
    return Case(once)


def nbclient_in_process(folder: Path, nb: Path) -> Case:
    from nbclient import NotebookClient

    def once() -> None:
        notebook = nbformat.read(str(nb), as_version=4)
        client = NotebookClient(notebook, resources={"metadata": {"path": str(folder)}})
        client.execute(stderr=subprocess.DEVNULL)  # the kernel's start-up warnings
        nbformat.write(notebook, str(folder / "out-nbclient.ipynb"))
    return Case(once)


def post_chunked(url: str, headers: dict[str, str], data: dict[str, str]) -> dict:
    """POST an execution with the chunked header, read events until the final one; it."""
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


def execution_api(url: str, headers: dict[str, str], notebook: str, output: str) -> Case:
    """Runs through an Execution API at ``url`` (…/executions), straight or via the service."""
    data = {"notebook": notebook, "output_path": output, "overwrite": "true"}
    return Case(lambda: post_chunked(url, headers, data))


def main(hub: hubenv.Hub | None = None) -> list[common.Row]:
    n = common.runs(20, 3)
    cases: dict[str, Case] = {}
    timings: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-execute-") as tmp:
        folder = Path(tmp) / "root"
        nb = common.write_notebook(common.trivial_notebook(10), folder / "trivial.ipynb")
        cases["papermill CLI"] = papermill(folder, nb)
        cases["jupyter execute"] = jupyter_execute(folder, nb)
        cases["nbclient in-process"] = nbclient_in_process(folder, nb)
        for name, case in cases.items():
            timings[name] = case.run(n)
        for label, server_name in SOURCES:
            with common.jupyter_server(folder, *hubenv.SERVER_ARGS[server_name]) as server:
                name = f"extension direct, {label}"
                cases[name] = execution_api(
                    f"{server.url}/api/executions", server.headers, "trivial.ipynb", "out.ipynb"
                )
                time.sleep(3)  # the template starts 2 s after the server
                timings[name] = cases[name].run(n)
        with hubenv.maybe_hub(hub, users=1) as running:
            user = running.users[0]
            running.put_notebook(user, "trivial.ipynb", common.trivial_notebook(10))
            base = f"{running.url}/services/nbexec/api/users/{user.name}"
            for label, server_name in SOURCES:
                running.real.start_server(user.name, server_name)
                time.sleep(3)  # the template starts 2 s after the server
                name = f"hub service via CHP, {label}"
                cases[name] = execution_api(
                    f"{base}/servers/{server_name}/executions", user.headers, "trivial.ipynb",
                    f"out-{server_name}.ipynb",
                )
                timings[name] = cases[name].run(n)
                running.real.stop_server(user.name, server_name, wait=False)
    ref = statistics.median(timings["papermill CLI"])
    rows = []
    for name, seconds in timings.items():
        row = common.Row.timings(NAME, name, seconds)
        row.values.pop("p99_s")
        row.values["speedup_vs_papermill"] = ref / row.values["median_s"]
        if cases[name].remote:
            row.values["spare_kernel_runs"] = f"{cases[name].warm_hits}/{len(seconds)}"
        rows.append(row)
    return rows


if __name__ == "__main__":
    pause = f"{PAUSE:g} s pause between runs" if PAUSE else "back to back, no pause"
    title = f"bench_execute: 10-cell trivial notebook, wall time per run ({pause})"
    common.print_rows(title, main())
