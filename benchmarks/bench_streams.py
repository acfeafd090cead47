"""Many Server-Sent Events readers on running executions, all through the hub service.

The notebook's first cell waits for a file to appear, so every reader is connected before
the measured events happen; then each cell sleeps briefly. For each such event: the delay
from its ``timestamp`` (set by the extension when the event is made) to its arrival at the
last reader. Also the service process's peak RSS while the readers are connected.

Run alone, from the repository root: ``python -m benchmarks.bench_streams``.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import threading
import time
from collections import defaultdict

import nbformat
import psutil
import requests
from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest

from benchmarks import common, hubenv
from tests.support.service_calls import SSEChunkDecoder

NAME = "streams"
GO_FILE = "bench-streams-go"


def gated_notebook(cells: int, seconds: float) -> nbformat.NotebookNode:
    """A notebook that waits for GO_FILE in its folder, then runs sleeping cells."""
    nb = common.slow_notebook(cells, seconds)
    nb.cells[0].source = (
        "import os, time\n"
        f"while not os.path.exists({GO_FILE!r}):\n"
        "    time.sleep(0.02)"
    )
    return nb


class Reader:
    """One SSE reader: when each ``seq`` arrived, and whether the stream ended cleanly."""

    def __init__(self) -> None:
        self.arrivals: dict[int, float] = {}
        self.timestamps: dict[int, float] = {}
        self.decoder = SSEChunkDecoder()
        self.connected = asyncio.Event()
        self.error: str | None = None
        self.final = False

    def on_chunk(self, chunk: bytes) -> None:
        now = time.time()
        for event in self.decoder.feed(chunk):
            self.arrivals[event["seq"]] = now
            self.timestamps[event["seq"]] = event["timestamp"]
            if event["event"] in ("notebook_complete", "notebook_error"):
                self.final = True
        if len(self.arrivals) >= 2:
            self.connected.set()

    async def read(self, url: str, headers: dict[str, str]) -> None:
        request = HTTPRequest(
            url, headers={**headers, "Accept": "text/event-stream"},
            streaming_callback=self.on_chunk, request_timeout=900, connect_timeout=120,
        )
        try:
            await AsyncHTTPClient().fetch(request)
        except (HTTPClientError, OSError) as exc:
            self.error = f"{type(exc).__name__}: {exc}"
        finally:
            self.connected.set()


def service_process(hub: hubenv.Hub) -> psutil.Process:
    """The `nbexec` service process the hub started."""
    for child in psutil.Process(hub.proc.pid).children(recursive=True):
        if any("nbexec_hub.service" in part for part in child.cmdline()):
            return child
    raise RuntimeError("the nbexec service process was not found")


def sample_rss(proc: psutil.Process, stop: threading.Event, peak: list[int]) -> None:
    while not stop.is_set():
        try:
            peak[0] = max(peak[0], proc.memory_info().rss)
        except psutil.Error:
            return
        stop.wait(0.05)


async def measure(hub: hubenv.Hub, user: hubenv.HubUser, readers: int, executions: int) -> dict:
    AsyncHTTPClient.configure(None, max_clients=readers + 10)
    base = f"{hub.url}/services/nbexec/api/users/{user.name}/executions"
    exec_ids = []
    for _ in range(executions):
        resp = requests.post(base, data={"notebook": "gated.ipynb"}, headers=user.headers,
                             timeout=60)
        resp.raise_for_status()
        exec_ids.append(resp.json()["execution"]["exec_id"])
    proc = service_process(hub)
    rss_before = proc.memory_info().rss
    peak = [rss_before]
    stop = threading.Event()
    sampler = threading.Thread(target=sample_rss, args=(proc, stop, peak), daemon=True)
    sampler.start()
    group = [Reader() for _ in range(readers)]
    connect_start = time.perf_counter()
    tasks = [
        asyncio.ensure_future(r.read(f"{base}/{exec_ids[i % executions]}/progress", user.headers))
        for i, r in enumerate(group)
    ]
    await asyncio.wait_for(asyncio.gather(*(r.connected.wait() for r in group)), 300)
    connect_time = time.perf_counter() - connect_start
    go_time = time.time()
    (user.home / GO_FILE).write_text("go")
    await asyncio.wait_for(asyncio.gather(*tasks), 600)
    stop.set()
    sampler.join()
    (user.home / GO_FILE).unlink()
    # per (execution, seq) event made after the go signal: arrival at its last reader
    last_arrival: dict[tuple[int, int], float] = defaultdict(float)
    made_at: dict[tuple[int, int], float] = {}
    deliveries = []
    for i, reader in enumerate(group):
        for seq, arrived in reader.arrivals.items():
            stamp = reader.timestamps[seq]
            if stamp < go_time:
                continue
            key = (i % executions, seq)
            made_at[key] = stamp
            last_arrival[key] = max(last_arrival[key], arrived)
            deliveries.append(arrived - stamp)
    to_last = [last_arrival[k] - made_at[k] for k in made_at]
    return {
        "failed": sum(1 for r in group if r.error or not r.final),
        "errors": sorted({r.error for r in group if r.error})[:3],
        "connect_s": connect_time,
        "events": len(made_at),
        "to_last_median_s": statistics.median(to_last) if to_last else float("nan"),
        "to_last_p99_s": common.percentile(to_last, 99) if to_last else float("nan"),
        "delivery_median_s": statistics.median(deliveries) if deliveries else float("nan"),
        "rss_before_mb": rss_before / 2**20,
        "rss_peak_mb": peak[0] / 2**20,
    }


def main(hub: hubenv.Hub | None = None) -> list[common.Row]:
    readers = common.runs(1000, 100)
    executions = 4 if not common.quick() else 2
    with hubenv.maybe_hub(hub, users=1) as running:
        user = running.users[0]
        running.put_notebook(user, "gated.ipynb", gated_notebook(cells=16, seconds=0.2))
        result = asyncio.run(measure(running, user, readers, executions))
    for error in result.pop("errors"):
        print("reader error:", error, file=sys.stderr)
    case = f"{readers} SSE readers on {executions} executions"
    return [common.Row(NAME, case, readers, result)]


if __name__ == "__main__":
    common.print_rows("bench_streams: concurrent SSE readers through the service", main())
