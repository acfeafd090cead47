"""No caller and no user's server can take the service from the others (issue 11, B.4).

Each load that once did is replayed on a real hub, bounded in time and size, while the
service's memory is watched and another user (alice) makes ordinary requests that must
keep being answered promptly: unauthenticated and forbidden bodies, one caller opening
more streams than allowed, a very long event line, readers that never read, huge answers
and error bodies from a hostile server (bob's, tests/support/hostile_server.py), and a hub whose
listing pages are tiny.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from urllib.parse import urlparse

import pytest

from tests.support.hostile_server import hostile_hub, service_process
from tests.support.realhub import RealHub
from tests.support.service_calls import Service, executions_path

MB = 1024 * 1024
#: a prompt answer, generous for a loaded 2-core machine
PROMPT = 5.0


@pytest.fixture(scope="module")
def hub() -> Iterator[RealHub]:
    service_args = (
        "--NbexecService.max_streams_per_caller=20",
        f"--NbexecService.max_event_bytes_per_caller={64 * MB}",
    )
    with hostile_hub("realhub-bounds-", servers=("alice", "bob"), service_args=service_args) as hub:
        yield hub


@pytest.fixture(scope="module")
def alice(hub: RealHub) -> Service:
    return Service(hub, hub.create_token("alice"))


@pytest.fixture(scope="module")
def bob(hub: RealHub) -> Service:
    return Service(hub, hub.create_token("bob"))


def rss_mb(hub: RealHub) -> float:
    return service_process(hub).memory_info().rss / MB


class Prober:
    """Alice asks for her executions every 0.2 s in a thread; the slowest answer counts."""

    def __init__(self, alice: Service) -> None:
        self.alice = alice
        self.slowest = 0.0
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            r = self.alice.get(executions_path("alice"), timeout=60)
            self.slowest = max(self.slowest, time.monotonic() - started)
            if r.status_code != 200:
                self.failures.append(f"{r.status_code} {r.text[:200]}")
            self._stop.wait(0.2)

    def __enter__(self) -> Prober:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=70)
        assert not self.failures, self.failures
        assert self.slowest < PROMPT, f"alice waited {self.slowest:.1f} s"


def open_socket(hub: RealHub) -> socket.socket:
    url = urlparse(hub.url)
    return socket.create_connection((url.hostname, url.port), timeout=30)


def read_status(sock: socket.socket, timeout: float) -> int:
    """The status code of the answer on `sock` (headers only)."""
    sock.settimeout(timeout)
    data = b""
    while b"\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    return int(data.split(b" ", 2)[1])


@pytest.mark.parametrize("who", ["anonymous", "bob on alice's server"])
def test_refused_bodies_are_answered_at_once_and_never_kept(
    hub: RealHub, alice: Service, bob: Service, who: str
) -> None:
    """Three huge bodies announced, a megabyte sent: the 401/403 comes before the rest."""
    before = rss_mb(hub)
    auth = b"" if who == "anonymous" else f"Authorization: token {bob.token}\r\n".encode()
    socks = []
    with Prober(alice):
        for _ in range(3):
            sock = open_socket(hub)
            sock.sendall(
                b"POST /services/nbexec/api/users/alice/executions HTTP/1.1\r\n"
                + f"Host: {urlparse(hub.url).netloc}\r\n".encode()
                + auth
                + b"Content-Type: application/json\r\nContent-Length: 99614720\r\n\r\n"
                + b" " * MB
            )
            socks.append(sock)
        statuses = [read_status(sock, timeout=PROMPT) for sock in socks]
        # the bodies keep coming; none of it is kept
        for sock in socks:
            try:
                for _ in range(20):
                    sock.sendall(b" " * MB)
            except OSError:
                pass  # the proxy or service may close once the answer is out: fine
            sock.close()
    assert statuses == [401] * 3 if who == "anonymous" else statuses == [403] * 3
    assert rss_mb(hub) - before < 50


def test_one_caller_cannot_take_every_stream(
    hub: RealHub, alice: Service, bob: Service
) -> None:
    """Bob's streams past his limit (20 here) are 429; alice is answered meanwhile; the
    slots come back when bob's streams end."""
    request = (
        f"GET /services/nbexec/{executions_path('bob')}?evil=idle HTTP/1.1\r\n"
        f"Host: {urlparse(hub.url).netloc}\r\nAuthorization: token {bob.token}\r\n"
        "Accept: text/event-stream\r\n\r\n"
    ).encode()
    socks = []
    try:
        for _ in range(20):
            sock = open_socket(hub)
            sock.sendall(request)
            socks.append(sock)
        assert [read_status(sock, timeout=30) for sock in socks] == [200] * 20
        extra = bob.get(executions_path("bob") + "?evil=idle",
                        headers={"Accept": "text/event-stream"}, timeout=30)
        assert extra.status_code == 429, extra.text[:300]
        assert "limit" in extra.json()["message"]
        # another user is not limited by bob's streams
        started = time.monotonic()
        assert alice.get(executions_path("alice")).status_code == 200
        assert time.monotonic() - started < PROMPT
    finally:
        for sock in socks:
            sock.close()
    deadline = time.monotonic() + 30
    while True:
        r = bob.get(executions_path("bob") + "/nothing/progress")
        if r.status_code != 429 or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert r.status_code == 404, r.text


def test_a_long_line_is_relayed_in_linear_time(
    hub: RealHub, alice: Service, bob: Service
) -> None:
    """One 40 MiB event line (a cell printing a huge string) arrives whole; others wait not."""
    with Prober(alice):
        r = bob.get(
            executions_path("bob") + "?evil=longline&mb=40",
            headers={"X-Response-Encoding": "chunked"},
            timeout=120,
        )
    assert r.status_code == 200
    lines = r.content.split(b"\n")
    assert len(lines[0]) > 40 * MB and lines[1].startswith(b'{"event": "notebook_complete"')


def test_long_lines_on_many_streams_share_one_budget(
    hub: RealHub, alice: Service, bob: Service
) -> None:
    """Four 40 MiB lines at once on four of bob's streams (each pauses half-way, so all
    four are unfinished together): his budget (64 MiB of unfinished lines here) cannot
    hold them all, so some are skipped and at least one arrives whole; memory stays
    bounded and alice is answered meanwhile."""
    before = rss_mb(hub)
    results: list[bytes] = []

    def read() -> None:
        r = bob.get(
            executions_path("bob") + "?evil=longline&mb=40&hold=4",
            headers={"X-Response-Encoding": "chunked"},
            timeout=120,
        )
        results.append(r.content)

    with Prober(alice):
        threads = [threading.Thread(target=read) for _ in range(4)]
        for thread in threads:
            thread.start()
        peak = 0.0
        while any(t.is_alive() for t in threads):
            peak = max(peak, rss_mb(hub))
            time.sleep(0.1)
    whole = [r for r in results if len(r) > 40 * MB]
    assert len(results) == 4 and 1 <= len(whole) < 4, [len(r) for r in results]
    assert all(r.rstrip().endswith(b'"notebook_complete", "seq": 1}') for r in results)
    assert peak - before < 450, f"the service grew by {peak - before:.0f} MB"


def test_readers_that_never_read_cost_bounded_memory(
    hub: RealHub, alice: Service, bob: Service
) -> None:
    """Four endless streams whose readers never read: the service's memory stays bounded."""
    before = rss_mb(hub)
    socks = []
    with Prober(alice):
        for _ in range(4):
            sock = open_socket(hub)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.sendall(
                f"GET /services/nbexec/{executions_path('bob')}?evil=endless HTTP/1.1\r\n"
                f"Host: {urlparse(hub.url).netloc}\r\nAuthorization: token {bob.token}\r\n"
                "Accept: text/event-stream\r\n\r\n".encode()
            )
            socks.append(sock)
        time.sleep(8)  # the hostile server writes as fast as it may meanwhile
        grown = rss_mb(hub) - before
    for sock in socks:
        sock.close()
    assert grown < 100, f"the service grew by {grown:.0f} MB"


@pytest.mark.parametrize(
    ("mode", "status"), [("bigerror&mb=300", 502), ("biganswer&mb=100", 502)]
)
def test_huge_answers_from_a_server_are_502_in_bounded_memory(
    hub: RealHub, alice: Service, bob: Service, mode: str, status: int
) -> None:
    before = rss_mb(hub)
    with Prober(alice):
        r = bob.get(executions_path("bob") + f"?evil={mode}", timeout=120)
    assert r.status_code == status, r.text[:300]
    assert "bytes" in r.json()["message"]
    assert rss_mb(hub) - before < 120


def test_the_fan_out_follows_the_hubs_pagination(realhub_factory: object) -> None:
    """On a hub whose pages hold one user, the admin's listing still has every server."""
    hub = realhub_factory(extra_config="c.JupyterHub.api_page_max_limit = 1")  # type: ignore[operator]
    for user in ("alice", "bob", "admin"):
        hub.start_server(user)
    admin = Service(hub, hub.create_token("admin"))
    listing = admin.get("api/executions").json()
    assert sorted(s["user"] for s in listing["servers"]) == ["admin", "alice", "bob"]
    # a plain user's listing costs one hub call, whatever the hub's size
    alice = Service(hub, hub.create_token("alice"))
    marker = len(hub.log_text())
    assert [s["user"] for s in alice.get("api/executions").json()["servers"]] == ["alice"]
    calls = [
        line for line in hub.log_text()[marker:].splitlines()
        if "GET /hub/api/users" in line and "(nbexec@" in line
    ]
    assert len(calls) == 1, calls


def test_nothing_above_made_the_service_log_an_uncaught_exception(hub: RealHub) -> None:
    """Refusing a hostile answer closes the upstream connection; it never raises inside
    tornado's callbacks (which would log an uncaught exception)."""
    errors = hub.uncaught_errors()
    assert not errors, "\n---\n".join(errors)
