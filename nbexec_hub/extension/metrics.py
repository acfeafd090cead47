"""Prometheus metrics of the Execution API, in prometheus_client's default registry.

jupyter_server serves that registry at its own ``/metrics`` (authenticated unless
``ServerApp.authenticate_prometheus`` is off), so these appear beside the server's own
metrics without a route of ours. Names follow JupyterHub's: ``nbexec_`` prefix,
``<noun>_<verb>_<unit>``, and every label value that can be known up front is created at
import, so each series starts at zero instead of appearing with its first event.

Labels never carry anything of a request: no path, parameter, user or kernel id.
"""

from __future__ import annotations

import weakref
from typing import Any

from prometheus_client import Counter, Gauge, Histogram

from ..protocol import FINAL_EVENTS, NOTEBOOK_START, OUTPUT

#: the final statuses of an execution as counted (its ``status`` field is free text)
FINAL_STATUSES = ("completed", "error", "interrupted", "shut_down")
#: how an execution got its kernel: spawned or forked for it, or a spare forked beforehand
KERNEL_ORIGINS = ("spawned", "forked", "spare")
#: the ``output_type`` of live output events (A.5); anything else counts as "other"
OUTPUT_TYPES = (
    "stream", "display_data", "update_display_data", "execute_result", "error",
    "clear_output", "other",
)
CHECKPOINT_RESULTS = ("written", "failed")

EXECUTIONS_STARTED = Counter(
    "nbexec_executions_started",
    "Executions accepted (each emitted notebook_start), queued ones included",
)
EXECUTIONS_ENDED = Counter(
    "nbexec_executions_ended",
    "Executions that ended, by final status: completed, error, interrupted (the server "
    "stopped under it), shut_down (shutdown action or deletion)",
    ["status"],
)
EXECUTION_DURATION = Histogram(
    "nbexec_execution_duration_seconds",
    "Time from an execution getting its slot to its final event, by final status "
    "(executions that never left the queue are not observed)",
    ["status"],
    buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600,
             float("inf")),
)
KERNEL_START_DURATION = Histogram(
    "nbexec_kernel_start_duration_seconds",
    "Time from asking for a kernel to it being ready for the first cell, by origin "
    "(spawned or forked for the execution, or spare: forked beforehand and waiting)",
    ["origin"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 3, 5, 10, 20, 30, 60, float("inf")),
)
OUTPUT_EVENTS = Counter(
    "nbexec_output_events",
    "Live output events sent while cells ran, by output_type",
    ["output_type"],
)
CHECKPOINTS = Counter(
    "nbexec_checkpoints",
    "Output notebooks rewritten while their execution ran (checkpoints), by result",
    ["result"],
)
RUNNING_EXECUTIONS = Gauge(
    "nbexec_running_executions", "Executions holding a slot (running) now"
)
QUEUED_EXECUTIONS = Gauge(
    "nbexec_queued_executions", "Executions waiting for a slot (over the concurrency limit) now"
)

for _status in FINAL_STATUSES:
    EXECUTIONS_ENDED.labels(status=_status)
    EXECUTION_DURATION.labels(status=_status)
for _origin in KERNEL_ORIGINS:
    KERNEL_START_DURATION.labels(origin=_origin)
for _output_type in OUTPUT_TYPES:
    OUTPUT_EVENTS.labels(output_type=_output_type)
for _result in CHECKPOINT_RESULTS:
    CHECKPOINTS.labels(result=_result)

#: the ExecutionManagers of this process (one per server; tests run several)
_managers: weakref.WeakSet[Any] = weakref.WeakSet()


def watch_manager(manager: Any) -> None:
    """Count this manager's running and queued executions in the gauges."""
    _managers.add(manager)


RUNNING_EXECUTIONS.set_function(lambda: sum(m.limiter.active for m in list(_managers)))
QUEUED_EXECUTIONS.set_function(lambda: sum(m.limiter.waiting for m in list(_managers)))


def final_status(ex: Any) -> str:
    """The counted final status of an ended execution (one of `FINAL_STATUSES`)."""
    # imported here: durability imports the execution module, which imports this one
    from .durability import INTERRUPTED

    if ex.status == "completed":
        return "completed"
    if ex.status == f"error: {INTERRUPTED}":
        return "interrupted"
    if ex.stop_reason is not None:
        return "shut_down"
    return "error"


def on_event(ex: Any, event: dict[str, Any]) -> None:
    """Count one event an execution emitted (called by `Execution.emit`)."""
    name = event["event"]
    if name == OUTPUT:
        output_type = (event.get("output") or {}).get("output_type")
        if output_type not in OUTPUT_TYPES:
            output_type = "other"
        OUTPUT_EVENTS.labels(output_type=output_type).inc()
    elif name == NOTEBOOK_START:
        EXECUTIONS_STARTED.inc()
    elif name in FINAL_EVENTS:
        status = final_status(ex)
        EXECUTIONS_ENDED.labels(status=status).inc()
        # an execution restored from an earlier server life (ended at start-up as
        # interrupted) has its events on disk only; its duration would include the downtime
        if ex.started_at is not None and ex.completed_at is not None and not ex.events_dropped:
            EXECUTION_DURATION.labels(status=status).observe(
                max(0.0, ex.completed_at - ex.started_at)
            )


def observe_kernel_start(origin: str, seconds: float) -> None:
    """A kernel (of `KERNEL_ORIGINS`) became ready for an execution after ``seconds``."""
    KERNEL_START_DURATION.labels(origin=origin).observe(seconds)


def count_checkpoint(written: bool) -> None:
    """A checkpoint was written (or failed to be)."""
    CHECKPOINTS.labels(result="written" if written else "failed").inc()
