"""Live output through the service: ``output`` events arrive while the cell runs (issue 14)."""

from __future__ import annotations

import time

from tests.support.realhub import RealHub, ticking_notebook
from tests.support.service_calls import (
    Service,
    executions_path,
    ndjson_events,
    sse_events,
    sse_messages,
)

EXECS = executions_path("alice")
TICKS = "".join(f"tick {i}\n" for i in range(5))


def check_live(arrivals: list[tuple[float, dict]]) -> None:
    """The first output came more than a second before the cell's end, with all the text."""
    events = [event for _, event in arrivals]
    assert events[-1]["event"] == "notebook_complete", events[-1]
    first_output = next(t for t, e in arrivals if e["event"] == "output")
    cell_end = next(t for t, e in arrivals if e["event"] == "end")
    assert cell_end - first_output > 1.0, [(round(t, 2), e["event"]) for t, e in arrivals]
    outputs = [e["output"] for e in events if e["event"] == "output"]
    assert "".join(o["text"] for o in outputs) == TICKS


def test_ndjson_post_relays_output_as_it_comes(
    realhub: RealHub, alice: Service, alice_server: dict
) -> None:
    realhub.put_notebook("alice", "ticks.ipynb", ticking_notebook())
    r = alice.post(EXECS, data={"notebook": "ticks.ipynb"},
                   headers={"X-Response-Encoding": "chunked"}, stream=True)
    assert r.status_code == 202
    check_live([(time.monotonic(), event) for event in ndjson_events(r)])


def test_sse_progress_relays_output_as_it_comes_and_replays_it(
    realhub: RealHub, alice: Service, alice_server: dict
) -> None:
    realhub.put_notebook("alice", "ticks.ipynb", ticking_notebook())
    exec_id = alice.run("alice", "ticks.ipynb")["exec_id"]
    r = alice.get(f"{EXECS}/{exec_id}/progress", headers={"Accept": "text/event-stream"},
                  stream=True)
    assert r.status_code == 200
    live = [(time.monotonic(), ident, data) for ident, data in sse_messages(r)]
    check_live([(t, data) for t, _, data in live])
    assert [int(ident) for _, ident, _ in live] == [data["seq"] for _, _, data in live]
    # after the fact, the same events: a reload of the page or a second reader sees them
    replay = sse_events(alice.get(f"{EXECS}/{exec_id}/progress",
                                  headers={"Accept": "text/event-stream"}).text)
    assert [data for _, data in replay] == [data for _, _, data in live]
