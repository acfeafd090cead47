"""Fixtures for the client and CLI tests: a real `jupyter server` subprocess with the
extension (loaded because the package is installed) and a TCP proxy that can cut streams."""

from __future__ import annotations

import re
import shutil
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from nbexec_hub.client import NbexecClient
from tests.support import servers
from tests.support.servers import JupyterServer

FILES = Path(__file__).parent / "files"


@pytest.fixture(scope="module")
def jupyter_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[JupyterServer]:
    """One Jupyter server per test module, rooted in a temporary copy of tests/client/files."""
    root = tmp_path_factory.mktemp("root")
    for nb in FILES.glob("*.ipynb"):
        shutil.copy(nb, root / nb.name)
    with servers.jupyter_server(root) as server:
        yield server


@pytest.fixture
def server_client(jupyter_server: JupyterServer) -> Iterator[NbexecClient]:
    """A direct client; every execution is deleted after the test."""
    client = jupyter_server.client()
    yield client
    client.delete_all()


class CuttingProxy:
    """A TCP proxy in threads that closes a connection once the upstream has sent a pattern.

    Only the first ``cuts`` connections whose responses match are cut; later ones pass
    through, so a client that reconnects gets a whole stream. Request heads are recorded
    so tests can see the ``Last-Event-ID`` of a resume.
    """

    def __init__(
        self, upstream_port: int, pattern: bytes, cuts: int = 1, stall: bool = False
    ) -> None:
        self.upstream_port = upstream_port
        #: instead of closing, go silent (a half-open connection: no FIN, no data)
        self.stall = stall
        self.pattern = re.compile(pattern)
        self.cuts_left = cuts
        self.cut_count = 0
        self.requests: list[bytes] = []
        self._lock = threading.Lock()
        self._listener = socket.socket()
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(16)
        self.port = self._listener.getsockname()[1]
        self._closed = False
        self._stopped = threading.Event()
        self._sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def _accept(self) -> None:
        while not self._closed:
            try:
                down, _ = self._listener.accept()
            except OSError:
                return
            up = socket.create_connection(("127.0.0.1", self.upstream_port))
            self._sockets += [down, up]
            state = {"cut": False}
            threading.Thread(target=self._pump_up, args=(down, up), daemon=True).start()
            threading.Thread(target=self._pump_down, args=(up, down, state), daemon=True).start()

    def _pump_up(self, down: socket.socket, up: socket.socket) -> None:
        """Client to server, recording what was asked."""
        try:
            while data := down.recv(65536):
                with self._lock:
                    self.requests.append(data)
                up.sendall(data)
        except OSError:
            pass
        finally:
            _close(up)

    def _pump_down(self, up: socket.socket, down: socket.socket, state: dict) -> None:
        """Server to client; forwards the matching bytes, then cuts both sides."""
        seen = b""
        try:
            while data := up.recv(65536):
                down.sendall(data)
                seen += data
                with self._lock:
                    cut = self.cuts_left > 0 and self.pattern.search(seen) is not None
                    if cut:
                        self.cuts_left -= 1
                        self.cut_count += 1
                if cut:
                    break
            if self.stall:
                while up.recv(65536):  # swallow keep-alives and events, send nothing
                    pass
                self._stopped.wait()  # even when the server is done: no FIN to the client
        except OSError:
            pass
        finally:
            _close(down)
            _close(up)

    def close(self) -> None:
        self._closed = True
        self._stopped.set()
        _close(self._listener)
        for s in self._sockets:
            _close(s)


def _close(s: socket.socket) -> None:
    try:
        s.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    s.close()


@pytest.fixture
def cutting_proxy(jupyter_server: JupyterServer) -> Iterator[type[CuttingProxy]]:
    """A factory of `CuttingProxy` in front of the Jupyter server, closed after the test."""
    made: list[CuttingProxy] = []
    port = jupyter_server.port

    def make(pattern: bytes, cuts: int = 1, stall: bool = False) -> CuttingProxy:
        proxy = CuttingProxy(port, pattern, cuts, stall)
        made.append(proxy)
        return proxy

    yield make  # type: ignore[misc]
    for proxy in made:
        proxy.close()
