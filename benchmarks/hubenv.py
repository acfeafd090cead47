"""A real JupyterHub for the benchmarks: the test suite's `RealHub` (tests/support/realhub.py).

That is the hub the tests use: a `jupyterhub` subprocess on free ports with the admin config
from ``hub_config/``, the real configurable-http-proxy from node_modules, the managed service
`nbexec` and a local-process spawner. The benchmarks add their own users (bench0, bench1, …),
each with a hub API token of their full permissions, and start their servers.
"""

from __future__ import annotations

import contextlib
import shutil
import sys
import tempfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nbformat

from benchmarks import common
from tests.support.realhub import RealHub

#: named servers with the extension's kernel sources chosen (for comparisons): "cold"
#: spawns every kernel (no forking), "forked" forks each kernel for its run (no spare),
#: "spare" forks them with a spare waiting (the defaults, as a default server has them)
COLD_SERVER, FORKED_SERVER, SPARE_SERVER = "cold", "forked", "spare"
_FORK, _SPARE = "--ExecutionExtensionApp.fork_kernels", "--ExecutionExtensionApp.spare_kernel"
SERVER_ARGS = {
    COLD_SERVER: [f"{_FORK}=False"],
    FORKED_SERVER: [f"{_FORK}=True", f"{_SPARE}=False"],
    SPARE_SERVER: [f"{_FORK}=True", f"{_SPARE}=True"],
}
COLD_SERVER_HOOK = f"""
_nbexec_bench_previous_hook = c.Spawner.pre_spawn_hook
def _nbexec_bench_servers(spawner):
    _nbexec_bench_previous_hook(spawner)
    spawner.args = [*spawner.args, *{SERVER_ARGS!r}.get(spawner.name, [])]
c.Spawner.pre_spawn_hook = _nbexec_bench_servers
"""


@dataclass
class HubUser:
    """A hub user of the benchmarks and their API token."""

    name: str
    token: str
    home: Path

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"token {self.token}"}


class Hub:
    """A running `RealHub` plus the benchmark users."""

    def __init__(self, real: RealHub, users: list[HubUser]) -> None:
        self.real = real
        self.users = users

    @property
    def url(self) -> str:
        return self.real.url

    @property
    def proc(self) -> Any:
        return self.real.proc

    def put_notebook(self, user: HubUser, path: str, nb: nbformat.NotebookNode) -> Path:
        """Write a notebook into the user's home (their server's root)."""
        return common.write_notebook(nb, user.home / path)

    def server_url(self, user: HubUser) -> str:
        """The user's default server through the proxy, without a trailing slash."""
        return f"{self.url}/user/{user.name}"


@contextlib.contextmanager
def running_hub(users: int = 1) -> Iterator[Hub]:
    """A hub with ``users`` benchmark users whose default servers are running."""
    names = [f"bench{i}" for i in range(users)]
    root = Path(tempfile.mkdtemp(prefix="bench-hub-"))
    real = RealHub(
        root,
        extra_config=(
            f"c.Authenticator.allowed_users |= {set(names)!r}\n"
            'c.JupyterHub.log_level = "WARN"\n'
            + COLD_SERVER_HOOK
        ),
    )
    try:
        real.start(timeout=120)
        members = []
        for name in names:
            real.home(name).mkdir(parents=True, exist_ok=True)
            members.append(HubUser(name, real.create_token(name), real.home(name)))
        with ThreadPoolExecutor(len(names)) as pool:
            list(pool.map(lambda n: real.start_server(n, wait=False), names))
        for name in names:
            real.wait_ready(name, timeout=180)
        yield Hub(real, members)
    except BaseException:
        print(real.log_text()[-4000:], file=sys.stderr)
        raise
    finally:
        for name in names:
            with contextlib.suppress(Exception):
                real.stop_server(name, wait=False)
        real.stop()
        shutil.rmtree(root, ignore_errors=True)


@contextlib.contextmanager
def maybe_hub(hub: Hub | None, users: int = 1) -> Iterator[Hub]:
    """The given hub when it has enough users, else a fresh one for this benchmark."""
    if hub is not None and len(hub.users) >= users:
        yield hub
        return
    with running_hub(users) as fresh:
        yield fresh
