"""Prometheus metrics of the hub service, served at ``/services/nbexec/metrics``.

The service keeps them in a registry of its own (`REGISTRY`, with the process, platform
and garbage-collector collectors), so nothing else living in the same Python process
shows up there. Names follow JupyterHub's (``nbexec_`` prefix, ``<noun>_<verb>_<unit>``,
requests labelled by handler class and status code, never by URL path), and every label
value that can be known up front is created at import, so those series start at zero.

No label carries anything a caller sent: no path, user or server name, token or
parameter. Methods outside the HTTP methods the service knows count as ``OTHER``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from .. import errors

REGISTRY = CollectorRegistry(auto_describe=True)
ProcessCollector(registry=REGISTRY)
PlatformCollector(registry=REGISTRY)
GCCollector(registry=REGISTRY)

#: why a request was answered 429: the caller's stream limit, or the user's server said so
TOO_MANY_CAUSES = ("caller_streams", "relayed")
#: why a request was answered 502 (`errors.UpstreamError.cause`, or the user's server or
#: proxy answered 502 itself: "relayed")
BAD_GATEWAY_CAUSES = (
    "hub_api", "server_start", "server_unreachable", "server_answer", "relayed", "other",
)
HTTP_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")

REQUEST_DURATION = Histogram(
    "nbexec_request_duration_seconds",
    "Requests the service answered, by handler class, method and status code; a relayed "
    "stream lasts as long as its reader stays",
    ["handler", "method", "code"],
    registry=REGISTRY,
)
FAILED_REQUESTS = Counter(
    "nbexec_failed_requests",
    "Requests answered 429 or 502, by code and cause",
    ["code", "cause"],
    registry=REGISTRY,
)
UPSTREAM_RESPONSE_DURATION = Histogram(
    "nbexec_upstream_response_duration_seconds",
    "Time from forwarding a request to a user's server to its answer's status line (for "
    "a stream: until the stream starts)",
    registry=REGISTRY,
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, float("inf")),
)
HUB_API_REQUEST_DURATION = Histogram(
    "nbexec_hub_api_request_duration_seconds",
    "The service's calls to the hub's REST API, by method and status code (599: the hub "
    "was not reached)",
    ["method", "code"],
    registry=REGISTRY,
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, float("inf")),
)

for _cause in TOO_MANY_CAUSES:
    FAILED_REQUESTS.labels(code="429", cause=_cause)
for _cause in BAD_GATEWAY_CAUSES:
    FAILED_REQUESTS.labels(code="502", cause=_cause)


class ServiceStateCollector(Collector):
    """Figures the service's objects keep anyway: open streams, per-server tokens minted."""

    def __init__(self) -> None:
        self.stream_slots: Any = None
        self.server_tokens: Any = None

    def collect(self) -> Iterator[Any]:
        slots, tokens = self.stream_slots, self.server_tokens
        yield GaugeMetricFamily(
            "nbexec_open_streams",
            "Relayed streams open now (progress, SSE, chunked runs, spawn progress)",
            value=slots.open_streams if slots is not None else 0,
        )
        yield CounterMetricFamily(
            "nbexec_server_tokens_minted",
            "Per-server tokens (scope access:servers!server=U/S) the service had the hub mint",
            value=tokens.minted if tokens is not None else 0,
        )


STATE = ServiceStateCollector()
REGISTRY.register(STATE)


def watch(stream_slots: Any, server_tokens: Any) -> None:
    """Report the open streams and minted tokens of this application's objects."""
    STATE.stream_slots = stream_slots
    STATE.server_tokens = server_tokens


def failure_cause(code: int, failure: BaseException | None) -> str:
    """Why a 429 or 502 answer was given (one of the causes above)."""
    if code == 429:
        return "caller_streams" if isinstance(failure, errors.TooManyRequests) else "relayed"
    if failure is None:
        return "relayed"
    cause = getattr(failure, "cause", None)
    return cause if cause in BAD_GATEWAY_CAUSES else "other"


def observe_request(handler: Any) -> None:
    """Count a finished request (the application's ``log_function`` calls it)."""
    code = handler.get_status()
    method = handler.request.method if handler.request.method in HTTP_METHODS else "OTHER"
    REQUEST_DURATION.labels(
        handler=type(handler).__name__, method=method, code=str(code)
    ).observe(handler.request.request_time())
    if code in (429, 502):
        cause = failure_cause(code, getattr(handler, "failure", None))
        FAILED_REQUESTS.labels(code=str(code), cause=cause).inc()


def observe_hub_call(method: str, code: int, started: float) -> None:
    """A hub API call answered (or failed: 599) after ``time.monotonic() - started``."""
    HUB_API_REQUEST_DURATION.labels(method=method, code=str(code)).observe(
        time.monotonic() - started
    )


def observe_upstream_response(started: float) -> None:
    """A user's server's answer began ``time.monotonic() - started`` after forwarding."""
    UPSTREAM_RESPONSE_DURATION.observe(time.monotonic() - started)
