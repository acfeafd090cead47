"""What hostile loads cost the hub service and the other users (issue 11, CONTRACT B.4 "Bounds").

Each load of issue 11 runs on a private real hub (tests/support/realhub.py) where bob's
server is hostile (tests/support/hostile_server.py) and alice's is ordinary. For each load:
the service's RSS before it, at its peak (sampled every 50 ms) and 2 s after it ended; the
CPU time it used during the load (user + system: the work that holds up its one event
loop); and alice's ``GET …/users/alice/executions`` made one after another (0.05 s apart,
on her kept-alive session, as the Python client does) for as long as the load lasts:
median and max. The first row is the same with no load.

1. three unauthenticated ``POST …/alice/executions`` announcing ``Content-Length:
   99614720`` and sending their bodies until the connection closes (``answered_s``: the
   slowest 401); through the proxy, then straight to the service's port (where the whole
   body arrives: configurable-http-proxy stops passing it on once the answer is out);
2. bob opening 150 idle streams (``?evil=idle``) with the default per-caller limit of 100,
   held open a while (``answered_s``: until all 150 had their status line);
3. one event line of 100 MiB (``?evil=longline``, ``X-Response-Encoding: chunked``; over
   the default ``max_event_bytes``, 64 MiB, so skipped) and of 40 MiB (relayed), with the
   same request straight to bob's server through the proxy for comparison (``direct_s``);
4. four endless progress streams (``?evil=endless``) whose readers never read (raw
   sockets with a 4 KiB receive buffer), held open a while (how many the service cut,
   from its log);
5. a 300 MiB error body and a 100 MiB answer from bob's server (both become a 502);
6. last, eight event lines of 60 MiB at once on as many of bob's streams (each line is
   under ``max_event_bytes``, and 8 streams are far under his limit).

``failed`` counts alice's requests that were not answered 200 (and loads that crashed).
``BENCH_QUICK=1`` shortens the baseline and the held loads; the loads are the same.

Run alone, from the repository root: ``python -m benchmarks.bench_hostile``.
"""

from __future__ import annotations

import contextlib
import socket
import statistics
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any, Self

import psutil
import requests

from benchmarks import common
from benchmarks.rawhttp import connect, read_status, service_request
from tests.support.hostile_server import hostile_hub, service_process
from tests.support.realhub import RealHub
from tests.support.service_calls import executions_path

NAME = "hostile"
MB = 1024 * 1024
#: the service's default max_streams_per_caller, passed explicitly
STREAM_LIMIT = 100
STREAMS = 150
#: several long lines at once: the per-event bound is per stream
CONCURRENT_LINES = 8
CONCURRENT_MB = 60
BODY_BYTES = 99614720
#: the service's RSS is read this long after a load ended
AFTER_S = 2.0
PROBE_GAP_S = 0.05


def hostile_bench_hub() -> contextlib.AbstractContextManager[RealHub]:
    """A private hub whose bob has a hostile server; alice's and bob's servers running."""
    return hostile_hub(
        "bench-hostile-",
        servers=("alice", "bob"),
        extra_config='c.JupyterHub.log_level = "WARN"\n',
        service_args=(f"--NbexecService.max_streams_per_caller={STREAM_LIMIT}",),
    )


class Sampling:
    """Calls `sample` in a thread, ``gap`` seconds apart, while the block runs (at least once)."""

    gap = 0.05

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def sample(self) -> None:
        raise NotImplementedError

    def _run(self) -> None:
        while True:
            self.sample()
            if self._stop.wait(self.gap):
                return

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


class PeakRss(Sampling):
    """The highest RSS of a process while the block runs, sampled every 50 ms."""

    def __init__(self, proc: psutil.Process) -> None:
        super().__init__()
        self.proc = proc
        self.peak = proc.memory_info().rss

    def sample(self) -> None:
        with contextlib.suppress(psutil.Error):
            self.peak = max(self.peak, self.proc.memory_info().rss)


class AliceProbe(Sampling):
    """Alice's ``GET …/users/alice/executions``, one after another (PROBE_GAP_S apart)."""

    gap = PROBE_GAP_S

    def __init__(self, session: requests.Session, url: str) -> None:
        super().__init__()
        self.session = session
        self.url = url
        self.seconds: list[float] = []
        self.failures: list[str] = []

    def sample(self) -> None:
        started = time.perf_counter()
        try:
            status = self.session.get(self.url, timeout=60).status_code
        except requests.RequestException as exc:
            status = type(exc).__name__
        self.seconds.append(time.perf_counter() - started)
        if status != 200:
            self.failures.append(str(status))


def at_once(count: int, target: Callable[[], None]) -> None:
    """Run ``target`` in ``count`` threads at once; wait for them all."""
    threads = [threading.Thread(target=target) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def since(hub: RealHub, marker: int, text: str) -> int:
    """How many lines of the hub's log (with the service's) after ``marker`` contain ``text``."""
    return sum(text in line for line in hub.log_text()[marker:].splitlines())


def refused_bodies(hub: RealHub, port: int | None = None) -> dict[str, Any]:
    """Three anonymous POSTs of 95 MiB each, at once, sending their bodies whole (through
    the proxy, or straight to the service's ``port``) until the connection closes."""
    head = service_request(hub, "POST", executions_path("alice"), {
        "Content-Type": "application/json", "Content-Length": str(BODY_BYTES),
    })
    answers: list[tuple[int | str, float]] = []
    sent: list[int] = []
    ended: list[float] = []

    def post() -> None:
        sock = connect(hub, port=port)
        started = time.perf_counter()

        def answer() -> None:
            answers.append((read_status(sock, 120), time.perf_counter() - started))

        reader = threading.Thread(target=answer, daemon=True)
        count = 0
        with sock:
            sock.sendall(head)
            reader.start()
            block = memoryview(b" " * MB)
            with contextlib.suppress(OSError):  # the proxy may close once the 401 is out
                while count < BODY_BYTES:
                    count += sock.send(block[: BODY_BYTES - count])
            ended.append(time.perf_counter() - started)
            reader.join(120)
        sent.append(count)

    at_once(3, post)
    statuses = Counter(status for status, _ in answers)
    return {
        "answered_s": max(seconds for _, seconds in answers),
        "outcome": f"{describe(statuses)}; {sum(sent) / MB:.0f} of {3 * BODY_BYTES / MB:.0f}"
        f" MiB sent, sending ended after {max(ended):.1f} s",
    }


def held_streams(
    hub: RealHub, token: str, query: str, count: int, hold: float, rcvbuf: int | None = None
) -> tuple[Counter, float]:
    """Bob opens ``count`` SSE streams of ``executions<query>`` on raw sockets, reads their
    status lines, keeps them ``hold`` seconds without reading, closes them: (statuses,
    seconds until every status line came)."""
    head = service_request(hub, "GET", executions_path("bob") + query, {
        "Authorization": f"token {token}", "Accept": "text/event-stream",
    })
    socks: list[socket.socket] = []
    started = time.perf_counter()
    try:
        for _ in range(count):
            socks.append(connect(hub, rcvbuf))
            socks[-1].sendall(head)
        statuses = Counter(read_status(sock, 60) for sock in socks)
        answered = time.perf_counter() - started
        time.sleep(hold)
    finally:
        for sock in socks:
            sock.close()
    return statuses, answered


def streams_past_limit(hub: RealHub, token: str, hold: float) -> dict[str, Any]:
    """Bob holds STREAMS idle streams (his server sends one small event a second on each)."""
    statuses, answered = held_streams(hub, token, "?evil=idle", STREAMS, hold)
    return {
        "answered_s": answered,
        "outcome": f"{STREAMS} opened: {describe(statuses)}; held {hold:.0f} s",
    }


def readers_that_never_read(hub: RealHub, token: str, hold: float) -> dict[str, Any]:
    """Four endless progress streams (64 KiB events, as fast as bob's server may) whose
    readers never read, with a 4 KiB receive buffer."""
    marker = len(hub.log_text())
    statuses, answered = held_streams(
        hub, token, "/endless/progress?evil=endless", 4, hold, rcvbuf=4096
    )
    cut = since(hub, marker, "Cutting a reader")
    return {
        "answered_s": answered,
        "outcome": f"{describe(statuses)}; held {hold:.0f} s; {cut} readers cut",
    }


def read_lines(url: str, headers: dict[str, str]) -> tuple[int, int, int]:
    """GET a stream and read it as it comes: (status, complete lines, longest line)."""
    lines = longest = current = 0
    with requests.get(url, headers=headers, stream=True, timeout=600) as resp:
        for chunk in resp.iter_content(MB):
            *ended, rest = chunk.split(b"\n")
            for piece in ended:
                longest = max(longest, current + len(piece))
                current = 0
                lines += 1
            current += len(rest)
    return resp.status_code, lines, longest


def long_line(hub: RealHub, token: str, mb: int) -> dict[str, Any]:
    """One event line of ``mb`` MiB through the service (NDJSON)."""
    marker = len(hub.log_text())
    status, lines, longest = read_lines(
        hub.service_url(executions_path("bob")) + f"?evil=longline&mb={mb}",
        {"Authorization": f"token {token}", "X-Response-Encoding": "chunked"},
    )
    skipped = since(hub, marker, "an event over")
    return {"outcome": f"{status}; lines: {lines}, longest {longest / MB:.1f} MiB"
            + (f"; {skipped} event skipped" if skipped else "")}


def long_lines_at_once(hub: RealHub, token: str, count: int, mb: int) -> dict[str, Any]:
    """``count`` event lines of ``mb`` MiB on as many streams at once (one caller, within
    its stream limit; each line under ``max_event_bytes``)."""
    results: list[str] = []

    def one() -> None:
        results.append(long_line(hub, token, mb)["outcome"])

    at_once(count, one)
    return {"outcome": describe(Counter(results))}


def long_line_direct(hub: RealHub, token: str, mb: int) -> float:
    """Seconds of the same request straight to bob's server through the proxy."""
    started = time.perf_counter()
    read_lines(f"{hub.url}/user/bob/api/executions?evil=longline&mb={mb}",
               {"Authorization": f"token {token}"})
    return time.perf_counter() - started


def huge_answer(hub: RealHub, token: str, mode: str) -> dict[str, Any]:
    """One GET whose answer from bob's server is huge."""
    resp = requests.get(
        hub.service_url(executions_path("bob")) + f"?evil={mode}",
        headers={"Authorization": f"token {token}"}, timeout=600,
    )
    return {"outcome": str(resp.status_code)}


def describe(statuses: Counter) -> str:
    """``100×200, 50×429``."""
    return ", ".join(f"{count}×{status}" for status, count in sorted(statuses.items(), key=str))


def measure(
    proc: psutil.Process, alice: requests.Session, url: str, case: str,
    load: Callable[[], dict[str, Any]],
) -> common.Row:
    """One row: the service's RSS and alice's latency around one load."""
    before = proc.memory_info().rss
    cpu_before = sum(proc.cpu_times()[:2])
    crashed = 0
    with PeakRss(proc) as peak, AliceProbe(alice, url) as probe:
        started = time.perf_counter()
        try:
            extra = load()
        except Exception as exc:  # noqa: BLE001  (reported in the row, the others still run)
            extra = {"outcome": f"crashed: {type(exc).__name__}: {str(exc)[:200]}"}
            crashed = 1
        seconds = time.perf_counter() - started
    cpu = sum(proc.cpu_times()[:2]) - cpu_before
    time.sleep(AFTER_S)
    after = proc.memory_info().rss
    outcome = extra.pop("outcome")
    values = {
        "load_s": seconds,
        "service_cpu_s": cpu,
        "rss_before_mb": before / MB,
        "rss_peak_mb": peak.peak / MB,
        "rss_after_mb": after / MB,
        "alice_median_ms": statistics.median(probe.seconds) * 1000,
        "alice_max_ms": max(probe.seconds) * 1000,
        "failed": len(probe.failures) + crashed,
        **extra,
        "outcome": outcome,
    }
    if probe.failures:
        print(f"{case}: alice got {Counter(probe.failures)}", file=sys.stderr)
    return common.Row(NAME, case, len(probe.seconds), values)


def run(hub: RealHub) -> list[common.Row]:
    """Every load in turn on a running hostile hub."""
    baseline = common.runs(10, 3)
    hold = common.runs(10, 4)
    alice = requests.Session()
    alice.headers["Authorization"] = f"token {hub.create_token('alice')}"
    bob = hub.create_token("bob")
    url = hub.service_url(executions_path("alice"))
    check = alice.get(url, timeout=60)  # her server answers through the service
    check.raise_for_status()
    proc = service_process(hub)
    direct = {mb: long_line_direct(hub, bob, mb) for mb in (100, 40)}

    def baseline_load() -> dict[str, Any]:
        time.sleep(baseline)
        return {"outcome": "no load"}

    loads: list[tuple[str, Callable[[], dict[str, Any]]]] = [
        ("baseline (no load)", baseline_load),
        ("3 anonymous POSTs of 95 MiB", lambda: refused_bodies(hub)),
        ("the same, to the service's port", lambda: refused_bodies(hub, hub.service_port)),
        (f"{STREAMS} idle streams, limit {STREAM_LIMIT}",
         lambda: streams_past_limit(hub, bob, hold)),
        *[
            (f"{mb} MiB event line, chunked",
             lambda mb=mb: {**long_line(hub, bob, mb), "direct_s": direct[mb]})
            for mb in (100, 40)
        ],
        ("4 endless streams, never read", lambda: readers_that_never_read(hub, bob, hold)),
        ("300 MiB error body", lambda: huge_answer(hub, bob, "bigerror&mb=300")),
        ("100 MiB answer", lambda: huge_answer(hub, bob, "biganswer&mb=100")),
        # last: the memory it leaves would be the next rows' "before"
        (f"{CONCURRENT_LINES} {CONCURRENT_MB} MiB event lines at once",
         lambda: long_lines_at_once(hub, bob, CONCURRENT_LINES, CONCURRENT_MB)),
    ]
    rows = [measure(proc, alice, url, case, load) for case, load in loads]
    alice.close()
    return rows


def main(hub: object = None) -> list[common.Row]:
    """All loads (``hub``, given by run_all, is not used: bob's server must be hostile, and
    the service's memory must not carry what other benchmarks left)."""
    with hostile_bench_hub() as private:
        return run(private)


if __name__ == "__main__":
    common.print_rows("bench_hostile: the service's memory and alice's latency under "
                      "hostile loads", main())
