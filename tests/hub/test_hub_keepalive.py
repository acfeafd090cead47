"""SSE relays send keep-alive comments while a cell is quiet (service started with a short
interval so the test does not wait 15 s)."""

from __future__ import annotations

import time

from tests.support.realhub import slow_notebook
from tests.support.service_calls import Service, executions_path


def test_keepalive_comments_during_a_quiet_cell(realhub_factory) -> None:  # type: ignore[no-untyped-def]
    hub = realhub_factory(service_args=("--keepalive=1",))
    alice = Service(hub, hub.create_token("alice"))
    hub.put_notebook("alice", "quiet.ipynb", slow_notebook(cells=1, seconds=4))
    r = alice.post(
        executions_path("alice") + "?start=1&wait=60",
        data={"notebook": "quiet.ipynb"},
        headers={"Accept": "text/event-stream"},
        stream=True,
    )
    assert r.status_code == 202
    seen: list[tuple[float, str]] = []
    for line in r.iter_lines(chunk_size=1, decode_unicode=True):
        if line:
            seen.append((time.monotonic(), line))
    keepalives = [t for t, line in seen if line.startswith(":")]
    assert len(keepalives) >= 2, seen
    assert '"notebook_complete"' in seen[-1][1]
    gaps = [b - a for a, b in zip(keepalives, keepalives[1:], strict=False)]
    assert all(gap < 2.5 for gap in gaps), gaps
