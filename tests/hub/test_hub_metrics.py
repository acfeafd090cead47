"""Prometheus metrics of the service at /services/nbexec/metrics (issue 16), on a real hub.

Only callers whose scopes include ``read:metrics`` may read them (as the hub's own
/hub/metrics); the counters move with what the service forwards; and nothing a caller
sent (tokens, parameter values, notebook paths, user names) ever shows there.
"""

from __future__ import annotations

import time
from typing import Any

import nbformat
import pytest
import requests

from tests.support.metrics import Scrape
from tests.support.realhub import RealHub, slow_notebook
from tests.support.service_calls import Service, executions_path, ndjson_events, sse_messages

#: a parameter value that must never show in the metrics
SECRET_VALUE = "okapi-marmot-31"
METRICS = "metrics"


def scrape(service: Service) -> Scrape:
    r = service.get(METRICS)
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"].startswith("text/plain")
    return Scrape(r.text)


def failing_notebook() -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("raise RuntimeError('on purpose')")]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Py", "language": "python"}
    return nb


def test_metrics_need_read_metrics(
    realhub: RealHub, alice: Service, admin: Service, alice_token: str
) -> None:
    anonymous = requests.get(realhub.service_url(METRICS), timeout=30, allow_redirects=False)
    assert anonymous.status_code == 401
    assert anonymous.headers["Content-Type"].startswith("application/json")
    assert "nbexec_" not in anonymous.text
    # a plain user holds no read:metrics
    forbidden = alice.get(METRICS, allow_redirects=False)
    assert forbidden.status_code == 403, forbidden.text
    assert "read:metrics" in forbidden.json()["message"]
    assert "nbexec_" not in forbidden.text
    # an admin does (the hub's admin role includes it)
    assert admin.get(METRICS).status_code == 200
    # a token made for scraping: read:metrics and access to the service
    scraper = realhub.create_token("admin", ["read:metrics", "access:services!service=nbexec"])
    r = Service(realhub, scraper).get(METRICS)
    assert r.status_code == 200
    assert "nbexec_request_duration_seconds" in r.text
    # a token of the same admin without read:metrics may not
    narrow = realhub.create_token("admin", ["access:services!service=nbexec"])
    assert Service(realhub, narrow).get(METRICS).status_code == 403
    # a cookie-less browser-style GET is not sent to the login page either
    assert requests.get(
        realhub.service_url(METRICS), headers={"Accept": "text/html"}, timeout=30,
        allow_redirects=False,
    ).status_code == 401


def test_every_cause_starts_at_zero(admin: Service) -> None:
    metrics = scrape(admin)
    for cause in ("caller_streams", "relayed"):
        assert ("nbexec_failed_requests_total",
                frozenset({"code": "429", "cause": cause}.items())) in metrics.samples
    for cause in ("hub_api", "server_start", "server_unreachable", "server_answer",
                  "relayed", "other"):
        assert ("nbexec_failed_requests_total",
                frozenset({"code": "502", "cause": cause}.items())) in metrics.samples
    for name in ("nbexec_open_streams", "nbexec_server_tokens_minted_total",
                 "nbexec_upstream_response_duration_seconds_count",
                 "process_resident_memory_bytes"):
        assert (name, frozenset()) in metrics.samples, name


def test_counters_move_with_what_the_service_forwards(
    realhub: RealHub,
    alice: Service,
    admin: Service,
    alice_server: dict[str, Any],
    alice_token: str,
    admin_token: str,
) -> None:
    realhub.put_notebook("alice", "metrics_tiny.ipynb")
    realhub.put_notebook("alice", "metrics_fails.ipynb", failing_notebook())
    realhub.put_notebook("alice", "metrics_slow.ipynb", slow_notebook(cells=3, seconds=3))
    before = scrape(admin)
    path = executions_path("alice")

    # a run streamed back as NDJSON (chunked), with a parameter value
    r = alice.post(path, data={"notebook": "metrics_tiny.ipynb", "word": SECRET_VALUE},
                   headers={"X-Response-Encoding": "chunked"}, stream=True)
    assert r.status_code == 202
    assert list(ndjson_events(r))[-1]["execution"]["status"] == "completed"
    # a run that fails
    failed = alice.run("alice", "metrics_fails.ipynb")
    assert alice.wait_done("alice", failed["exec_id"])["status"].startswith("error")
    # a long run, followed as SSE (an open stream) and shut down
    slow = alice.run("alice", "metrics_slow.ipynb")
    progress = alice.get(f"{path}/{slow['exec_id']}/progress",
                         headers={"Accept": "text/event-stream"}, stream=True)
    assert progress.status_code == 200
    messages = sse_messages(progress)
    next(messages)
    during = scrape(admin)
    assert during.value("nbexec_open_streams") >= 1
    r = alice.post(f"{path}/{slow['exec_id']}", data={"action": "shutdown"})
    assert r.status_code == 202
    assert [data for _, data in messages][-1]["event"] == "notebook_error"
    progress.close()
    # a server that fails to start: a 502 whose cause is the start
    r = alice.post(executions_path("alice", "broken") + "?start=1&wait=30", data={})
    assert r.status_code == 502, r.text

    deadline = time.monotonic() + 10
    while True:  # the stream's request is counted once the service has seen it end
        after = scrape(admin)
        if after.value("nbexec_open_streams") == 0 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert after.value("nbexec_open_streams") == 0

    def grew(name: str, **labels: str) -> float:
        return after.total(name, **labels) - before.total(name, **labels)

    forwarded = dict(handler="ForwardHandler", method="POST", code="202")
    assert grew("nbexec_request_duration_seconds_count", **forwarded) >= 4
    assert grew("nbexec_request_duration_seconds_count", handler="ForwardHandler",
                method="GET", code="200") >= 1
    assert grew("nbexec_request_duration_seconds_count", handler="ForwardHandler",
                code="502") == 1
    assert grew("nbexec_failed_requests_total", code="502", cause="server_start") == 1
    assert grew("nbexec_failed_requests_total", code="502", cause="server_answer") == 0
    assert grew("nbexec_upstream_response_duration_seconds_count") >= 6
    assert grew("nbexec_upstream_response_duration_seconds_sum") > 0
    assert grew("nbexec_hub_api_request_duration_seconds_count", method="GET", code="200") >= 1
    assert grew("nbexec_hub_api_request_duration_seconds_count", method="POST") >= 1
    assert after.value("nbexec_server_tokens_minted_total") >= 1
    # requests are labelled by handler class, never by path
    handlers = {dict(labels).get("handler") for (name, labels) in after.samples
                if name == "nbexec_request_duration_seconds_count"}
    assert "ForwardHandler" in handlers and not any("/" in h for h in handlers if h)

    # nothing a caller sent, and no credential, is in the metrics
    for secret in (alice_token, admin_token, realhub.service_token, realhub.admin_token,
                   SECRET_VALUE, "metrics_tiny", "metrics_slow", "metrics_fails", "alice",
                   "bob", slow["exec_id"], "broken"):
        assert secret not in after.text, secret


def test_the_extensions_metrics_through_the_hub(
    realhub: RealHub, alice: Service, alice_server: dict[str, Any], alice_token: str,
    bob_token: str,
) -> None:
    """Each user's server serves the Execution API's metrics at its own /metrics, to
    whoever may access that server."""
    realhub.put_notebook("alice", "metrics_tiny.ipynb")
    url = f"{realhub.url}/user/alice/metrics"
    headers = {"Authorization": f"token {alice_token}"}
    before = Scrape(requests.get(url, headers=headers, timeout=30).text)
    done = alice.wait_done("alice", alice.run("alice", "metrics_tiny.ipynb",
                                              word=SECRET_VALUE)["exec_id"])
    assert done["status"] == "completed"
    r = requests.get(url, headers=headers, timeout=30)
    assert r.status_code == 200
    after = Scrape(r.text)
    assert after.value("nbexec_executions_started_total") - before.value(
        "nbexec_executions_started_total") == 1
    assert after.value("nbexec_executions_ended_total", status="completed") - before.value(
        "nbexec_executions_ended_total", status="completed") == 1
    for secret in (alice_token, SECRET_VALUE, "metrics_tiny"):
        assert secret not in r.text
    # bob may not read alice's server's metrics
    r = requests.get(url, headers={"Authorization": f"token {bob_token}"}, timeout=30,
                     allow_redirects=False)
    assert r.status_code in (302, 403, 404)
    assert "nbexec_" not in r.text


@pytest.mark.timeout(180)
def test_a_caller_past_its_stream_limit_is_counted(realhub_factory: Any) -> None:
    hub = realhub_factory(service_args=("--NbexecService.max_streams_per_caller=1",))
    alice = Service(hub, hub.create_token("alice"))
    admin = Service(hub, hub.create_token("admin"))
    hub.start_server("alice")
    hub.put_notebook("alice", "metrics_slow.ipynb", slow_notebook(cells=3, seconds=3))
    before = scrape(admin)
    slow = alice.run("alice", "metrics_slow.ipynb")
    path = f"{executions_path('alice')}/{slow['exec_id']}/progress"
    first = alice.get(path, headers={"Accept": "text/event-stream"}, stream=True)
    assert first.status_code == 200
    second = alice.get(path, headers={"Accept": "text/event-stream"})
    assert second.status_code == 429, second.text
    during = scrape(admin)
    assert during.value("nbexec_open_streams") == 1
    first.close()
    after = scrape(admin)
    assert after.value("nbexec_failed_requests_total", code="429", cause="caller_streams") - (
        before.value("nbexec_failed_requests_total", code="429", cause="caller_streams")) == 1
    assert after.value("nbexec_failed_requests_total", code="429", cause="relayed") == 0
