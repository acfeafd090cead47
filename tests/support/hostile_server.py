"""A user's server turned hostile, for the attack tests: a config file its owner writes.

A user controls their own server; one of the simplest ways is ``~/.jupyter/
jupyter_server_config.py``, which is Python run inside the server. `install(home)` writes
one that

- records the ``Authorization`` header of every request the server receives, one per
  line, in ``<home>/seen-authorization.txt`` (the credentials the service sends there);
- answers any API request carrying ``?evil=<mode>`` as a hostile server would:
  ``html`` (a ``text/html`` page, status ``?code=``, default 200), ``notjson`` (the same
  page labelled ``application/json``), ``bigerror`` (a JSON
  error body of ``?mb=`` MiB), ``biganswer`` (a JSON answer of ``?mb=`` MiB), ``longline``
  (an NDJSON stream whose one event is a ``?mb=`` MiB line, paused ``?hold=`` seconds
  half-way), ``endless`` (an NDJSON stream
  of 64 KiB events that never ends, as fast as it may), ``idle`` (one small event a second,
  forever).

More modes: ``refuse-first`` (403 for the first token it ever sees there, a JSON answer
for any other), ``refuse-all`` (403 always), ``answer`` (``<home>/answer.bin`` with
status ``?code=`` and type ``?type=``); and while ``<home>/answer-always.json`` exists
(``{"code": …, "type": …}``), every API request is answered that way.

The server must be (re)started after `install` for the file to take effect.
`hostile_hub()` starts a private hub whose bob is hostile from the start, and
`service_process(hub)` finds the nbexec service it runs (to watch its memory).
"""

from __future__ import annotations

import contextlib
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil

from tests.support.realhub import RealHub

SEEN_FILE = "seen-authorization.txt"

CONFIG = r'''
import asyncio, json, os
from jupyter_server.base.handlers import APIHandler
from tornado.web import RequestHandler

_SEEN = os.path.join(os.path.expanduser("~"), "seen-authorization.txt")


def _record(handler):
    auth = handler.request.headers.get("Authorization")
    if auth:
        with open(_SEEN, "a") as f:
            f.write(auth + "\n")


_prepare = APIHandler.prepare


async def _hostile_prepare(self):
    _record(self)
    mode = self.get_query_argument("evil", None)
    always = os.path.join(os.path.expanduser("~"), "answer-always.json")
    if mode is None and os.path.exists(always):
        with open(always) as f:
            how = json.load(f)  # {"code": ..., "type": ...}: every request gets answer.bin
        self.set_status(how["code"])
        self.set_header("Content-Type", how["type"])
        with open(os.path.join(os.path.expanduser("~"), "answer.bin"), "rb") as f:
            return RequestHandler.finish(self, f.read())
    if mode is None:
        return await _prepare(self)
    mb = int(self.get_query_argument("mb", "1"))
    block = b" " * (1024 * 1024)
    if mode == "html":
        self.set_status(int(self.get_query_argument("code", "200")))
        self.set_header("Content-Type", "text/html")
        # past APIHandler.finish, which would label it application/json
        RequestHandler.finish(self, "<html><script>document.title = 'owned'</script></html>")
    elif mode == "notjson":
        self.set_status(int(self.get_query_argument("code", "200")))
        self.set_header("Content-Type", "application/json")
        RequestHandler.finish(self, "<html><script>document.title = 'owned'</script></html>")
    elif mode in ("bigerror", "biganswer"):
        self.set_status(500 if mode == "bigerror" else 200)
        self.set_header("Content-Type", "application/json")
        self.write(b'{"message": "')
        for _ in range(mb):
            self.write(block)
            await self.flush()
        self.finish(b'"}')
    elif mode == "longline":
        self.set_header("Content-Type", "application/x-ndjson")
        self.write(b'{"event": "progress", "seq": 0, "pad": "')
        hold = float(self.get_query_argument("hold", "0"))
        for i in range(mb):
            if i == mb // 2 and hold:
                await asyncio.sleep(hold)  # half a line, held: streams overlap for sure
            self.write(b"z" * (1024 * 1024))
            await self.flush()
        self.write(b'"}\n')
        self.finish(b'{"event": "notebook_complete", "seq": 1}\n')
    elif mode == "refuse-first":
        # refuse the first token seen here (as a server whose cache dropped a revoked
        # token would), accept any other
        first = os.path.join(os.path.expanduser("~"), "refused-token.txt")
        auth = self.request.headers.get("Authorization", "")
        if not os.path.exists(first):
            with open(first, "w") as f:
                f.write(auth)
        with open(first) as f:
            refused = f.read()
        self.set_header("Content-Type", "application/json")
        if auth == refused:
            self.set_status(403)
            RequestHandler.finish(self, json.dumps({"message": "token refused"}))
        else:
            RequestHandler.finish(self, json.dumps({"executions": []}))
    elif mode == "refuse-all":
        self.set_status(403)
        self.set_header("Content-Type", "application/json")
        RequestHandler.finish(self, json.dumps({"message": "no token is good enough"}))
    elif mode == "answer":
        # a JSON answer of the server's choosing: ?code= and the body in ~/answer.bin
        self.set_status(int(self.get_query_argument("code", "200")))
        self.set_header("Content-Type", self.get_query_argument("type", "application/json"))
        with open(os.path.join(os.path.expanduser("~"), "answer.bin"), "rb") as f:
            RequestHandler.finish(self, f.read())
    elif mode == "idle":
        self.set_header("Content-Type", "application/x-ndjson")
        seq = 0
        while True:
            self.write(json.dumps({"event": "progress", "seq": seq}) + "\n")
            seq += 1
            try:
                await self.flush()
            except Exception:
                return
            await asyncio.sleep(1)
    elif mode == "endless":
        self.set_header("Content-Type", "application/x-ndjson")
        seq = 0
        pad = "p" * 65536
        while True:
            self.write(json.dumps({"event": "progress", "seq": seq, "pad": pad}) + "\n")
            seq += 1
            try:
                await self.flush()
            except Exception:
                return
            if seq % 16 == 0:
                await asyncio.sleep(0)


APIHandler.prepare = _hostile_prepare
'''


def install(home: Path) -> Path:
    """Write the hostile config into a user's home; the path of the recorded headers."""
    config_dir = home / ".jupyter"
    config_dir.mkdir(parents=True, exist_ok=True)
    (config_dir / "jupyter_server_config.py").write_text(CONFIG)
    seen = home / SEEN_FILE
    seen.unlink(missing_ok=True)
    return seen


def seen_tokens(home: Path) -> set[str]:
    """Every token the hostile server was sent (``Authorization: token <t>``)."""
    path = home / SEEN_FILE
    if not path.exists():
        return set()
    tokens = set()
    for line in path.read_text().splitlines():
        scheme, _, value = line.strip().partition(" ")
        if scheme.lower() in ("token", "bearer") and value:
            tokens.add(value)
    return tokens


@contextlib.contextmanager
def hostile_hub(
    prefix: str = "realhub-hostile-", *, servers: tuple[str, ...] = (), **kwargs: Any
) -> Iterator[RealHub]:
    """A private `RealHub` (`kwargs` as RealHub's) whose bob has a hostile server, with the
    `servers` of those users started; stopped and removed afterwards."""
    hub = RealHub(Path(tempfile.mkdtemp(prefix=prefix)), **kwargs)
    install(hub.home("bob"))
    try:
        hub.start(timeout=120)
        for user in servers:
            hub.start_server(user, wait=False)
        for user in servers:
            hub.wait_ready(user, timeout=180)
        yield hub
    except BaseException:
        print(hub.log_text()[-4000:], file=sys.stderr)
        raise
    finally:
        hub.stop()
        shutil.rmtree(hub.root, ignore_errors=True)


def service_process(hub: RealHub) -> psutil.Process:
    """The nbexec service the hub runs (a child of the hub's process)."""
    assert hub.proc is not None
    for child in psutil.Process(hub.proc.pid).children(recursive=True):
        if "nbexec_hub.service" in " ".join(child.cmdline()):
            return child
    raise RuntimeError("the nbexec service process was not found")
