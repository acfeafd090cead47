"""Kernel start alone: spawned, forked from the template, or a spare; memory per kernel.

In-process, on jupyter_server's own kernel manager as the extension uses it: the time from
asking for a kernel to its kernel_info reply on both channels (as the runner gets it),
back to back with no pause (each kernel shut down before the next is asked for), then the
unique memory (USS, psutil) of a few kernels of each kind alive at once, and the
template's own. The template's start is not in the forked figures (it happens once, at
the first run). "forked" has spares off; "spare" has them on (the default), so each start
takes the spare forked at the previous launch, waiting for it if it is not ready yet.

Run alone, from the repository root: ``python -m benchmarks.bench_kernel_start``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import statistics
import tempfile
import time

import psutil
from jupyter_server.services.kernels.kernelmanager import AsyncMappingKernelManager

from benchmarks import common
from nbexec_hub.extension.client_handshake import connect_client, kernel_info
from nbexec_hub.extension.forking import KernelForker
from nbexec_hub.extension.kernels import ServerKernels
from nbexec_hub.extension.provisioner import make_default_provisioner

LOG = logging.getLogger("bench_kernel_start")


async def start_ready(kernels: ServerKernels) -> tuple[float, str, int]:
    """Seconds to a kernel that answered kernel_info, its id and its pid."""
    started = time.perf_counter()
    lease = await kernels.start("python3", "bench/nb.ipynb")
    if lease.client is not None:  # a spare's, connected while it waited
        client = lease.client
        await kernel_info(client, 60, lease.manager.is_alive)
    else:
        client = lease.manager.client()
        await connect_client(client, 60, lease.manager.is_alive)
    seconds = time.perf_counter() - started
    client.stop_channels()
    return seconds, lease.kernel_id, lease.manager.provisioner.pid


def uss_mb(pid: int) -> float:
    return psutil.Process(pid).memory_full_info().uss / 2**20


async def measure(case: str, n: int, alive: int) -> list[common.Row]:
    with tempfile.TemporaryDirectory() as root:
        os.makedirs(os.path.join(root, "bench"))
        mkm = AsyncMappingKernelManager(root_dir=root)
        forker = None if case == "spawned" else KernelForker(LOG, spare=case == "spare")
        kernels = ServerKernels(mkm, LOG, forker=forker)
        try:
            if forker is not None:  # the template comes up with the first kernel
                _, kernel_id, _ = await start_ready(kernels)
                await kernels.discard(kernel_id)
            seconds = []
            for _ in range(n):
                took, kernel_id, _ = await start_ready(kernels)
                seconds.append(took)
                await kernels.discard(kernel_id)
            if forker is not None:
                got = forker.forks + forker.spares_used
                assert got == n + 1, "a kernel was spawned instead of forked"
                if case == "spare":
                    assert forker.spares_used == n, "a start did not get the spare"
            rows = [common.Row.timings("kernel start", case, seconds)]
            leases = [await start_ready(kernels) for _ in range(alive)]
            await asyncio.sleep(1)  # past start-up allocations
            uss = [uss_mb(pid) for _, _, pid in leases]
            extra = {}
            if forker is not None and forker.template is not None:
                extra["template_uss_mb"] = round(uss_mb(forker.template.pid), 1)
            rows.append(
                common.Row(
                    "kernel memory (USS)",
                    case,
                    alive,
                    {"uss_mb_median": round(statistics.median(uss), 1), **extra},
                )
            )
            for _, kernel_id, _ in leases:
                await kernels.discard(kernel_id)
            return rows
        finally:
            await kernels.close()


async def amain() -> list[common.Row]:
    reason = make_default_provisioner()
    if reason:
        raise RuntimeError(f"cannot fork kernels: {reason}")
    n = common.runs(20, 3)
    alive = common.runs(5, 2)
    rows = []
    for case in ("spawned", "forked", "spare"):
        rows += await measure(case, n, alive)
    return rows


def main(hub: object = None) -> list[common.Row]:
    """The rows (``hub`` is ignored: this one runs in-process)."""
    return asyncio.run(amain())


if __name__ == "__main__":
    common.print_rows("bench_kernel_start: kernel start alone and memory per kernel", main())
