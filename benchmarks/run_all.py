"""Run every benchmark against one real hub and print one table (``make bench``).

From the repository root: ``python -m benchmarks.run_all`` (what ``make bench`` runs).

``BENCH_QUICK=1`` is the short mode CI runs to keep the scripts working; ``BENCH_ONLY=a,b``
runs a subset (names: kernel_start, execute, overhead, concurrency, streams, memory,
hostile). Exits non-zero when a benchmark crashed or reported failures, after printing
everything it measured. bench_hostile runs on a hub of its own (bob's server there is hostile).
"""

from __future__ import annotations

import os
import sys
import time
import traceback

from benchmarks import (
    bench_concurrency,
    bench_execute,
    bench_hostile,
    bench_kernel_start,
    bench_memory,
    bench_overhead,
    bench_streams,
    common,
    hubenv,
)

BENCHMARKS = {
    "kernel_start": bench_kernel_start,
    "execute": bench_execute,
    "overhead": bench_overhead,
    "concurrency": bench_concurrency,
    "streams": bench_streams,
    "memory": bench_memory,
    "hostile": bench_hostile,
}


def main() -> int:
    only = [n for n in os.environ.get("BENCH_ONLY", "").split(",") if n]
    chosen = {name: mod for name, mod in BENCHMARKS.items() if not only or name in only}
    mode = "quick" if common.quick() else "full"
    print(f"# nbexec-hub benchmarks ({mode} mode)\n\nMachine: {common.machine()}", flush=True)
    rows: list[common.Row] = []
    failed: list[str] = []
    started = time.perf_counter()
    users = 2 if common.quick() else 5
    with hubenv.running_hub(users=users) as hub:
        for name, module in chosen.items():
            t0 = time.perf_counter()
            try:
                got = module.main(hub)
            except Exception:
                traceback.print_exc()
                failed.append(name)
                continue
            common.print_rows(f"{name} ({time.perf_counter() - t0:.0f} s)", got)
            rows.extend(got)
            if any(r.values.get("failures") or r.values.get("failed") for r in got):
                failed.append(name)
    print(f"\n# All results ({time.perf_counter() - started:.0f} s in all)")
    for name in chosen:
        mine = [r for r in rows if r.bench == name]
        if mine:
            print("\n" + common.format_table(mine))
    if failed:
        print(f"\nFAILED: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
