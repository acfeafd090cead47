"""A real JupyterHub for tests: the shared pytest plugin
(``pytest_plugins = ["tests.support.realhub"]`` in tests/conftest.py).

It runs the ``jupyterhub`` command in a temporary folder, with free ports, the real
configurable-http-proxy from ``node_modules/.bin``, the admin config from
``hub_config/jupyterhub_config.py`` (so the ``nbexec`` service is managed by the hub and
single-user servers load the Execution API extension), a local-process spawner
(``--allow-root`` when root, one home/notebook folder per user) and the users
``alice``, ``bob`` (plain users) and ``admin`` (a hub admin). A named server called
``broken`` always fails to start (for tests of spawn failures).

Fixtures
--------
``realhub`` (session)
    A started `RealHub`. Use it for everything that does not restart the hub.
``realhub_factory`` (function)
    ``realhub_factory(**kwargs)`` starts an extra, private `RealHub` and stops it
    afterwards. Keyword arguments: ``extra_config`` (Python appended to the hub's config,
    e.g. ``"c.JupyterHub.cleanup_servers = False"``) and ``service_args`` (extra command
    line arguments of the nbexec service, e.g. ``("--keepalive=1",)``).
``alice_token``, ``bob_token``, ``admin_token`` (session)
    Hub API tokens of those users with their full permissions.
``alice_server`` (function)
    Makes sure alice's default server is running and ready; returns its status model.

`RealHub` helpers (all synchronous, built on ``requests``)
----------------------------------------------------------
``hub.service_token`` (the service's own token, to check it never leaks),
``hub.url`` (the proxy, e.g. ``http://127.0.0.1:40123``), ``hub.hub_api`` (``…/hub/api``),
``hub.service_url(path="")`` (``…/services/nbexec/<path>``),
``hub.api(method, path, token=None, **kw)`` (a hub API call, as the test admin by default),
``hub.create_token(user, scopes=None)``, ``hub.start_server(user, name="", wait=True)``,
``hub.stop_server(user, name="", wait=True)``, ``hub.server_model(user, name="")``,
``hub.wait_ready(user, name="")``, ``hub.home(user)`` (the user's notebook folder, a Path),
``hub.put_notebook(user, path, source=None)`` (copy a notebook there: ``source`` is a Path,
an nbformat node, or None for a tiny two-cell notebook), ``hub.login(user)`` (a
``requests.Session`` logged in to the hub *and* to the service page through OAuth, with
``session.xsrf`` holding the service's XSRF token), ``hub.restart(down_seconds=0)`` (users'
servers keep running only with ``cleanup_servers = False``), ``hub.stop()``,
``hub.log_text()`` (the hub's, the proxy's, the service's and the servers' output).

The hub answers ``POST …/server`` at once (``slow_spawn_timeout = 0``), so "pending" is
observable. Set ``REALHUB_DEBUG=1`` for debug logs.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import nbformat
import pytest
import requests

from tests.support.servers import free_port, stop_process, wait_until_up

REPO = Path(__file__).resolve().parents[2]
CHP = REPO / "node_modules" / ".bin" / "configurable-http-proxy"
HUB_CONFIG = REPO / "hub_config" / "jupyterhub_config.py"
BIN = Path(sys.executable).parent
USERS = ("alice", "bob", "admin")


def tiny_notebook(source: str = "x = 1\nprint('hello', x)") -> nbformat.NotebookNode:
    """A small notebook: a parameters cell and one code cell."""
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell("x = 1")
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, nbformat.v4.new_code_cell(source)]
    nb.metadata["kernelspec"] = {
        "name": "python3", "display_name": "Python 3", "language": "python"
    }
    return nb


def slow_notebook(cells: int = 4, seconds: float = 0.7) -> nbformat.NotebookNode:
    """`tiny_notebook`'s parameters cell, then code cells that each sleep and print their number."""
    nb = tiny_notebook()
    nb.cells = nb.cells[:1] + [
        nbformat.v4.new_code_cell(f"import time\ntime.sleep({seconds})\nprint('cell', {i})")
        for i in range(cells)
    ]
    return nb


def ticking_notebook(lines: int = 5, seconds: float = 0.4) -> nbformat.NotebookNode:
    """One cell printing ``tick <i>`` every ``seconds`` (live output: issue 14)."""
    nb = tiny_notebook()
    nb.cells = [nbformat.v4.new_code_cell(
        f"import time\nfor i in range({lines}):\n    print('tick', i, flush=True)\n"
        f"    time.sleep({seconds})"
    )]
    return nb


class RealHub:
    """One jupyterhub process (with its proxy, the nbexec service and users' servers)."""

    def __init__(self, root: Path, *, extra_config: str = "", service_args: tuple = ()) -> None:
        self.root = root
        self.extra_config = extra_config
        self.service_args = list(service_args)
        self.port = free_port()
        self.hub_port = free_port()
        self.proxy_api_port = free_port()
        self.service_port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.hub_api = f"{self.url}/hub/api"
        self.admin_token = secrets.token_hex(16)
        #: the nbexec service's own token (known here so tests can check it never leaks)
        self.service_token = secrets.token_hex(16)
        self.proc: subprocess.Popen | None = None
        self._log_path = root / "jupyterhub.log"
        self._known_pids: set[int] = set()
        for user in USERS:
            self.home(user).mkdir(parents=True, exist_ok=True)
        self._write_config()

    # -- process --------------------------------------------------------------------

    def _write_config(self) -> None:
        allow_root = ["--allow-root"] if os.getuid() == 0 else []
        service_cmd = [sys.executable, "-m", "nbexec_hub.service", *self.service_args]
        text = f"""
import sys
load_subconfig({str(HUB_CONFIG)!r})
c = get_config()
c.JupyterHub.ip = "127.0.0.1"
c.JupyterHub.port = {self.port}
c.JupyterHub.public_url = {self.url + "/"!r}
c.JupyterHub.hub_ip = "127.0.0.1"
c.JupyterHub.hub_port = {self.hub_port}
c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:{self.proxy_api_port}"
c.ConfigurableHTTPProxy.command = [{str(CHP)!r}]
c.ConfigurableHTTPProxy.auth_token = "proxy-" + {self.admin_token!r}
c.JupyterHub.db_url = "sqlite:///" + {str(self.root / "jupyterhub.sqlite")!r}
c.JupyterHub.cookie_secret_file = {str(self.root / "cookie_secret")!r}
c.JupyterHub.pid_file = {str(self.root / "jupyterhub.pid")!r}
c.JupyterHub.authenticator_class = "dummy"
c.DummyAuthenticator.password = "test-password"
c.Authenticator.allowed_users = {{"alice", "bob"}}
c.Authenticator.admin_users = {{"admin"}}
c.JupyterHub.spawner_class = "simple"
c.SimpleLocalProcessSpawner.home_dir_template = {str(self.root / "home" / "{username}")!r}
c.Spawner.cmd = [{str(BIN / "jupyterhub-singleuser")!r}]
c.Spawner.args = {allow_root!r}
c.Spawner.start_timeout = 60
c.Spawner.http_timeout = 60
c.Spawner.environment = {{"PYTHONUNBUFFERED": "1"}}
c.JupyterHub.services[0]["command"] = {service_cmd!r}
c.JupyterHub.services[0]["url"] = "http://127.0.0.1:{self.service_port}"
c.JupyterHub.services[0]["api_token"] = {self.service_token!r}
# answer POST .../server at once (202) instead of after up to 10 s, so "pending" is visible
c.JupyterHub.tornado_settings = {{"slow_spawn_timeout": 0}}
c.JupyterHub.services.append({{"name": "test-admin", "api_token": {self.admin_token!r}}})
c.JupyterHub.load_roles.append({{
    "name": "test-admin",
    "scopes": ["admin:users", "admin:servers", "tokens", "list:users", "access:servers",
               "access:services", "shares"],
    "services": ["test-admin"],
}})
def _fail_on_purpose(spawner):
    # a named server called "broken" never starts: tests of spawn failures use it
    if spawner.name == "broken":
        raise RuntimeError("this server fails to start on purpose")
c.Spawner.pre_spawn_hook = _fail_on_purpose
c.JupyterHub.log_level = "DEBUG" if {bool(os.environ.get("REALHUB_DEBUG"))!r} else "INFO"
{self.extra_config}
"""
        (self.root / "jupyterhub_config.py").write_text(text)

    def start(self, timeout: float = 60) -> None:
        """Start jupyterhub and wait until the hub API and the service answer."""
        env = dict(os.environ)
        env["PATH"] = f"{BIN}{os.pathsep}{CHP.parent}{os.pathsep}{env.get('PATH', '')}"
        env.pop("JUPYTERHUB_API_TOKEN", None)
        log = open(self._log_path, "ab")
        self.proc = subprocess.Popen(
            [str(BIN / "jupyterhub"), "-f", str(self.root / "jupyterhub_config.py")],
            cwd=self.root,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        wait_until_up(
            self.proc,
            lambda: (
                requests.get(self.hub_api + "/", timeout=2).status_code == 200
                and requests.get(self.service_url("api/health"), timeout=2).status_code == 200
            ),
            "jupyterhub",
            self.log_text,
            timeout,
        )

    def stop(self, *, stop_servers: bool = True) -> None:
        """Stop jupyterhub (and, by default, every user's server first)."""
        if self.proc is None:
            return
        if stop_servers and self.proc.poll() is None:
            self._remember_pids()
            for user in USERS:
                try:
                    model = self.api("GET", f"/users/{user}").json()
                    for name in model.get("servers", {}):
                        self.stop_server(user, name, wait=False)
                except requests.RequestException:
                    pass
        stop_process(self.proc, 30, group=True)
        if stop_servers:
            for pid in self._known_pids:
                try:
                    os.killpg(pid, signal.SIGTERM)
                except OSError:
                    pass
        self.proc = None

    def restart(self, *, down_seconds: float = 0) -> None:
        """Stop the hub (leaving users' servers alone), optionally wait, start it again."""
        self._remember_pids()
        self.stop(stop_servers=False)
        time.sleep(down_seconds)
        self.start()

    def _remember_pids(self) -> None:
        """Note servers' pids (from their spawner state) so teardown can always kill them."""
        for user in USERS:
            try:
                model = self.api("GET", f"/users/{user}")
                for server in model.json().get("servers", {}).values():
                    pid = (server.get("state") or {}).get("pid")
                    if pid:
                        self._known_pids.add(int(pid))
            except (requests.RequestException, ValueError):
                pass

    def log_text(self) -> str:
        return self._log_path.read_text(errors="replace") if self._log_path.exists() else ""

    def uncaught_errors(self, *, all_errors: bool = False) -> list[str]:
        """The service's uncaught exceptions and never-retrieved task exceptions in the log
        (with ``all_errors``, every error line of the service), each with the lines that
        follow it (its traceback). The hub's and the servers' own lines (``JupyterHub``,
        ``ServerApp``) are not the service's: a hostile server's errors are its own."""
        log = self.log_text().splitlines()
        found = [
            i for i, line in enumerate(log)
            if "never retrieved" in line
            or line.startswith("[E ") and ("tornado." in line or " nbexec" in line)
            and (all_errors or "Uncaught exception" in line)
        ]
        return ["\n".join(log[i:i + 40]) for i in found]

    # -- hub API helpers --------------------------------------------------------------

    def service_url(self, path: str = "") -> str:
        return f"{self.url}/services/nbexec/{path.lstrip('/')}"

    def api(self, method: str, path: str, token: str | None = None, **kw: Any) -> requests.Response:
        headers = {"Authorization": f"token {token or self.admin_token}", **kw.pop("headers", {})}
        kw.setdefault("timeout", 30)
        return requests.request(method, self.hub_api + path, headers=headers, **kw)

    def create_token(self, user: str, scopes: list[str] | None = None) -> str:
        """A new hub API token of `user` (their full permissions unless `scopes` narrows them)."""
        body: dict[str, Any] = {"note": "realhub test", "expires_in": 3600}
        if scopes is not None:
            body["scopes"] = scopes
        r = self.api("POST", f"/users/{user}/tokens", json=body)
        r.raise_for_status()
        return r.json()["token"]

    def _server_path(self, user: str, name: str = "") -> str:
        return f"/users/{user}/servers/{quote(name, safe='')}" if name else f"/users/{user}/server"

    def server_model(self, user: str, name: str = "") -> dict[str, Any] | None:
        """The hub's model of the server, or None when it is stopped."""
        return self.api("GET", f"/users/{user}").json().get("servers", {}).get(name)

    def wait_ready(self, user: str, name: str = "", timeout: float = 60) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            model = self.server_model(user, name)
            if model and model.get("ready"):
                self._remember_pids()
                return model
            time.sleep(0.2)
        raise TimeoutError(f"{user}/{name} not ready after {timeout}s:\n{self.log_text()[-3000:]}")

    def wait_stopped(self, user: str, name: str = "", timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.server_model(user, name) is None:
                return
            time.sleep(0.2)
        raise TimeoutError(f"{user}/{name} still running after {timeout}s")

    def start_server(self, user: str, name: str = "", wait: bool = True) -> dict[str, Any] | None:
        r = self.api("POST", self._server_path(user, name))
        if r.status_code not in (201, 202, 400):
            r.raise_for_status()
        return self.wait_ready(user, name) if wait else None

    def stop_server(self, user: str, name: str = "", wait: bool = True) -> None:
        r = self.api("DELETE", self._server_path(user, name))
        if r.status_code not in (202, 204, 400, 404):
            r.raise_for_status()
        if wait:
            self.wait_stopped(user, name)

    # -- users' files and browser sessions ---------------------------------------------

    def home(self, user: str) -> Path:
        """The user's home folder, which is their server's root (notebook folder)."""
        return self.root / "home" / user

    def put_notebook(self, user: str, path: str, source: Any = None) -> Path:
        """Write a notebook into the user's folder: a Path to copy, a notebook node, or tiny."""
        target = self.home(user) / path
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(source, (str, Path)):
            shutil.copyfile(source, target)
        else:
            nbformat.write(source if source is not None else tiny_notebook(), target)
        return target

    def login(self, user: str) -> requests.Session:
        """A session logged in to the hub and, through OAuth, to the service page."""
        s = requests.Session()
        s.get(f"{self.url}/hub/login", timeout=30)
        r = s.post(
            f"{self.url}/hub/login",
            data={"username": user, "password": "test-password", "_xsrf": s.cookies.get("_xsrf")},
            allow_redirects=False,
            timeout=30,
        )
        assert r.status_code == 302, r.text
        r = s.get(self.service_url(""), timeout=60)
        assert r.url.startswith(self.service_url("")), r.url
        s.xsrf = s.cookies.get("_xsrf", path="/services/nbexec/")  # type: ignore[attr-defined]
        return s


def _make_hub(**kwargs: Any) -> RealHub:
    root = Path(tempfile.mkdtemp(prefix="realhub-"))
    return RealHub(root, **kwargs)


@pytest.fixture(scope="session")
def realhub() -> Iterator[RealHub]:
    """A real JupyterHub for the whole test session."""
    hub = _make_hub()
    try:
        hub.start()
        yield hub
    finally:
        hub.stop()
        shutil.rmtree(hub.root, ignore_errors=True)


@pytest.fixture
def realhub_factory() -> Iterator[Any]:
    """Start private hubs (``realhub_factory(extra_config=...)``); all stopped afterwards."""
    hubs: list[RealHub] = []

    def make(**kwargs: Any) -> RealHub:
        hub = _make_hub(**kwargs)
        hubs.append(hub)
        hub.start()
        return hub

    yield make
    for hub in hubs:
        hub.stop()
        shutil.rmtree(hub.root, ignore_errors=True)


@pytest.fixture(scope="session")
def alice_token(realhub: RealHub) -> str:
    return realhub.create_token("alice")


@pytest.fixture(scope="session")
def bob_token(realhub: RealHub) -> str:
    return realhub.create_token("bob")


@pytest.fixture(scope="session")
def admin_token(realhub: RealHub) -> str:
    return realhub.create_token("admin")


@pytest.fixture
def alice_server(realhub: RealHub) -> dict[str, Any]:
    """Alice's default server, started if needed and ready."""
    return realhub.start_server("alice")


def pytest_report_header(config: Any) -> str:
    return f"realhub: configurable-http-proxy {'found' if CHP.exists() else 'MISSING'} at {CHP}"


__all__ = ["RealHub", "slow_notebook", "tiny_notebook"]
