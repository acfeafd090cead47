"""What the hub service adds to a request: straight to the user's server vs through the service.

Both paths go through configurable-http-proxy; the service path adds the service's
authentication, its readiness lookup and one more proxy hop. Measured one request at a
time on kept-alive connections: ``GET …/executions/<id>``, and the first event of a
chunked ``POST …/executions``.

Run alone, from the repository root: ``python -m benchmarks.bench_overhead``.
"""

from __future__ import annotations

import json
import statistics
import time

import requests

from benchmarks import common, hubenv

NAME = "overhead"


def timed_gets(session: requests.Session, url: str, n: int) -> list[float]:
    """Wall times of ``n`` sequential GETs (after two untimed ones)."""
    times = []
    for i in range(n + 2):
        start = time.perf_counter()
        resp = session.get(url, timeout=30)
        elapsed = time.perf_counter() - start
        if resp.status_code != 200:
            raise RuntimeError(f"GET {url}: {resp.status_code} {resp.text[:200]}")
        if i >= 2:
            times.append(elapsed)
    return times


def first_event_times(session: requests.Session, url: str, n: int) -> list[float]:
    """Time to the first line of a chunked POST (then read to the end, untimed)."""
    times = []
    for _ in range(n):
        start = time.perf_counter()
        with session.post(
            url, data={"notebook": "trivial.ipynb"}, stream=True, timeout=120,
            headers={"X-Response-Encoding": "chunked"},
        ) as resp:
            lines = resp.iter_lines()
            first = next(line for line in lines if line.strip())
            times.append(time.perf_counter() - start)
            if json.loads(first).get("event") != "notebook_start":
                raise RuntimeError(f"first event is not notebook_start: {first[:200]!r}")
            for _ in lines:
                pass
    return times


def main(hub: hubenv.Hub | None = None) -> list[common.Row]:
    n_get = common.runs(300, 30)
    n_post = common.runs(20, 3)
    rows = []
    with hubenv.maybe_hub(hub, users=1) as running:
        user = running.users[0]
        running.put_notebook(user, "trivial.ipynb", common.trivial_notebook(10))
        direct = f"{running.server_url(user)}/api/executions"
        service = f"{running.url}/services/nbexec/api/users/{user.name}/executions"
        session = requests.Session()
        session.headers.update(user.headers)
        created = session.post(direct, data={"notebook": "trivial.ipynb"}, timeout=60)
        created.raise_for_status()
        exec_id = created.json()["execution"]["exec_id"]
        pairs = {
            "GET execution": (
                timed_gets(session, f"{direct}/{exec_id}", n_get),
                timed_gets(session, f"{service}/{exec_id}", n_get),
            ),
            "chunked POST, first event": (
                first_event_times(session, direct, n_post),
                first_event_times(session, service, n_post),
            ),
        }
        session.close()
    for case, (straight, through) in pairs.items():
        for path, seconds in (("direct via proxy", straight), ("via service", through)):
            row = common.Row.timings(NAME, f"{case}: {path}", seconds)
            row.values.pop("p90_s")
            row.values["x_direct"] = statistics.median(seconds) / statistics.median(straight)
            rows.append(row)
    return rows


if __name__ == "__main__":
    common.print_rows("bench_overhead: direct to the user's server vs through the service", main())
