"""Raw HTTP/1.1 on sockets, for benchmarks that need what an HTTP client hides: bodies sent
by hand while the answer is read, and readers that never read (bench_hostile)."""

from __future__ import annotations

import socket
from urllib.parse import urlparse

from tests.support.realhub import RealHub


def connect(hub: RealHub, rcvbuf: int | None = None, *, port: int | None = None) -> socket.socket:
    """A TCP connection to the hub's proxy, or to ``port`` (``rcvbuf`` set before connecting)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.settimeout(60)
    sock.connect(("127.0.0.1", port or urlparse(hub.url).port))
    return sock


def service_request(hub: RealHub, method: str, path: str, headers: dict[str, str]) -> bytes:
    """The head of an HTTP/1.1 request to the service's ``path``."""
    lines = [f"{method} /services/nbexec/{path} HTTP/1.1", f"Host: {urlparse(hub.url).netloc}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def read_status(sock: socket.socket, timeout: float) -> int | str:
    """The status code of the answer on ``sock`` (reads at most its first lines)."""
    sock.settimeout(timeout)
    data = b""
    try:
        while b"\r\n" not in data:
            chunk = sock.recv(4096)
            if not chunk:
                return "closed"
            data += chunk
    except OSError as exc:
        return type(exc).__name__
    return int(data.split(b" ", 2)[1])
