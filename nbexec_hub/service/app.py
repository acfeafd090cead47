"""`NbexecService`: the traitlets application that configures and runs the hub service.

JupyterHub starts it as a managed service (``python -m nbexec_hub.service`` or
``nbexec-hub-service``) with the ``JUPYTERHUB_*`` environment, from which every
trait takes its default. It only gathers configuration and builds the tornado
application; the work is done by `HubClient`, `Forwarder` and the handlers.

Tornado settings available to every handler (also the page's):
``hub_auth`` (the `HubOAuth`), ``hub_client`` (`HubClient`), ``forwarder``
(`Forwarder`), ``service_prefix``, ``hub_http_client``, ``log``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import secrets
import signal
import sys
from typing import Any
from urllib.parse import urlparse, urlunparse

from jupyterhub.services.auth import HubOAuth
from jupyterhub.utils import url_path_join
from tornado import web
from tornado.httpclient import AsyncHTTPClient
from tornado.httpserver import HTTPServer
from tornado.log import LogFormatter
from traitlets import Bool, Bytes, Float, Integer, Unicode, default
from traitlets.config import Application

from .. import __version__
from . import page
from .forward import Forwarder
from .handlers import OAuthCallbackHandler, default_handlers, fallback_handlers
from .hubclient import HubClient
from .streaming import StreamingHTTPClient

#: query parameters never written to a log line
_SECRET_PARAMS = re.compile(r"([?&](?:token|_xsrf|code|state)=)[^&]*", re.IGNORECASE)


def scrub_uri(uri: str) -> str:
    """A request URI safe to log: token-like query values replaced."""
    return _SECRET_PARAMS.sub(r"\1[secret]", uri)


def proxy_url_from_env(env: dict[str, str] | os._Environ[str]) -> str:
    """The proxy's public origin from the hub's environment, or "" when it did not say."""
    public_hub = env.get("JUPYTERHUB_PUBLIC_HUB_URL", "")
    if public_hub:
        return urlunparse(urlparse(public_hub)._replace(path="", params="", query="", fragment=""))
    return env.get("JUPYTERHUB_HOST", "")


def raise_open_file_limit() -> int:
    """Raise the soft limit of open files towards the hard one: each relayed stream holds
    two sockets, and the common default of 1024 would cap the service near 500 streams."""
    try:
        import resource
    except ImportError:  # pragma: no cover - not on POSIX
        return 0
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 65536 if hard == resource.RLIM_INFINITY else min(hard, 65536)
    if soft != resource.RLIM_INFINITY and soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
        return want
    return soft


class NbexecService(Application):
    """The nbexec hub service: status, start and forwarding of executions to users' servers."""

    name = "nbexec-hub-service"
    version = __version__
    description = (
        "JupyterHub service that tells whether a user's server is ready, starts it and "
        "forwards notebook executions to it, relaying progress."
    )

    aliases = {
        "ip": "NbexecService.ip",
        "port": "NbexecService.port",
        "proxy-url": "NbexecService.proxy_url",
        "hub-api-url": "NbexecService.hub_api_url",
        "service-prefix": "NbexecService.service_prefix",
        "readiness-cache": "NbexecService.readiness_cache_seconds",
        "default-wait": "NbexecService.default_wait",
        "max-wait": "NbexecService.max_wait",
        "keepalive": "NbexecService.keepalive_seconds",
        "max-streams": "NbexecService.max_streams",
        "max-body-size": "NbexecService.max_body_size",
        "config": "NbexecService.config_file",
        "log-level": "Application.log_level",
    }
    flags = {
        "generate-config": (
            {"NbexecService": {"generate_config": True}},
            "Write a commented nbexec_service_config.py to the current folder and exit.",
        ),
        "debug": ({"Application": {"log_level": logging.DEBUG}}, "Log debug messages."),
    }

    @default("log_level")
    def _default_log_level(self) -> int:
        return logging.INFO

    config_file = Unicode(
        "nbexec_service_config.py", help="The config file to load (if it exists)."
    ).tag(config=True)
    generate_config = Bool(
        False, help="Write a commented nbexec_service_config.py and exit (--generate-config)."
    ).tag(config=True)

    ip = Unicode(help="Address to listen on. Default: the host of $JUPYTERHUB_SERVICE_URL.").tag(
        config=True
    )

    @default("ip")
    def _default_ip(self) -> str:
        url = os.environ.get("JUPYTERHUB_SERVICE_URL")
        return urlparse(url).hostname or "127.0.0.1" if url else "127.0.0.1"

    port = Integer(help="Port to listen on. Default: the port of $JUPYTERHUB_SERVICE_URL.").tag(
        config=True
    )

    @default("port")
    def _default_port(self) -> int:
        url = os.environ.get("JUPYTERHUB_SERVICE_URL")
        return (urlparse(url).port or 80) if url else 10101

    service_prefix = Unicode(
        help="URL prefix the hub's proxy routes to the service. "
        "Default: $JUPYTERHUB_SERVICE_PREFIX."
    ).tag(config=True)

    @default("service_prefix")
    def _default_prefix(self) -> str:
        return os.environ.get("JUPYTERHUB_SERVICE_PREFIX", "/services/nbexec/")

    hub_api_url = Unicode(help="The hub's REST API URL. Default: $JUPYTERHUB_API_URL.").tag(
        config=True
    )

    @default("hub_api_url")
    def _default_api_url(self) -> str:
        return os.environ.get("JUPYTERHUB_API_URL", "http://127.0.0.1:8081/hub/api")

    api_token = Unicode(
        help="The service's own hub token (never logged, never sent to callers). "
        "Default: $JUPYTERHUB_API_TOKEN."
    ).tag(config=True)

    @default("api_token")
    def _default_token(self) -> str:
        return os.environ.get("JUPYTERHUB_API_TOKEN", "")

    proxy_url = Unicode(
        help="Where the service reaches users' servers: the proxy's URL (origin). Default: "
        "from $JUPYTERHUB_PUBLIC_HUB_URL or $JUPYTERHUB_HOST, which the hub sets when "
        "c.JupyterHub.public_url is set. Never taken from request headers. On Kubernetes "
        "use the proxy's in-cluster address, e.g. http://proxy-public/."
    ).tag(config=True)

    @default("proxy_url")
    def _default_proxy_url(self) -> str:
        return proxy_url_from_env(os.environ)

    cookie_secret = Bytes(
        help="Secret signing the service's login cookies. Replicas must share it. "
        "Default: $NBEXEC_COOKIE_SECRET (hex), else random per process."
    ).tag(config=True)

    @default("cookie_secret")
    def _default_cookie_secret(self) -> bytes:
        env = os.environ.get("NBEXEC_COOKIE_SECRET")
        return bytes.fromhex(env) if env else secrets.token_bytes(32)

    readiness_cache_seconds = Float(
        3.0, help="How long a 'ready' answer from the hub is reused before asking again."
    ).tag(config=True)
    default_wait = Float(
        60.0, help="Seconds to wait for a server to become ready with ?start=1 and no ?wait=."
    ).tag(config=True)
    max_wait = Float(600.0, help="Upper bound for ?wait= in seconds.").tag(config=True)
    keepalive_seconds = Float(
        15.0, help="Seconds between keep-alive comments on Server-Sent Event streams."
    ).tag(config=True)
    liveness_seconds = Float(
        5.0,
        help="A stream quiet for this long makes the service ask the hub whether the server "
        "still runs (the proxy may keep a dead server's stream open); gone: the relay ends.",
    ).tag(config=True)
    request_timeout = Float(
        60.0, help="Timeout in seconds of a forwarded request that is not a stream."
    ).tag(config=True)
    max_streams = Integer(
        2000, help="Upstream connections available to forwarded requests and streams."
    ).tag(config=True)
    hub_max_clients = Integer(
        50, help="Concurrent requests to the hub API and for listing executions."
    ).tag(config=True)
    max_body_size = Integer(
        100 * 1024 * 1024,
        help="Largest request body in bytes; bigger ones are answered 413.",
    ).tag(config=True)
    fanout_concurrency = Integer(
        10, help="Servers asked at the same time by GET /api/executions."
    ).tag(config=True)
    fanout_timeout = Float(
        10.0, help="Seconds each server gets to answer GET /api/executions."
    ).tag(config=True)

    def initialize(self, argv: list[str] | None = None) -> None:  # type: ignore[override]
        super().initialize(argv)
        if self.generate_config:
            return
        if os.path.exists(self.config_file):
            self.load_config_file(self.config_file)
        self._setup_logging()
        if not self.proxy_url:
            sys.exit(
                "nbexec: no proxy URL. Set c.JupyterHub.public_url in the hub's config (the hub "
                "then passes JUPYTERHUB_PUBLIC_HUB_URL), or JUPYTERHUB_HOST, or "
                "--NbexecService.proxy_url=http://<proxy address>/ ."
            )
        if not self.api_token:
            sys.exit(
                "nbexec: no hub API token. Run me as a JupyterHub service (JUPYTERHUB_API_TOKEN)."
            )

    def _setup_logging(self) -> None:
        """Log lines in the hub's format, so the hub's log reads as one."""
        fmt = (
            "%(color)s[%(levelname)1.1s %(asctime)s.%(msecs).03d %(name)s]%(end_color)s"
            " %(message)s"
        )
        handler = logging.StreamHandler()
        handler.setFormatter(LogFormatter(fmt=fmt, datefmt="%Y-%m-%d %H:%M:%S"))
        root = logging.getLogger("nbexec")
        root.handlers = [handler]
        root.setLevel(self.log_level)
        root.propagate = False
        for name in ("tornado.access", "tornado.application", "tornado.general", "JupyterHub"):
            logging.getLogger(name).handlers = [handler]
            logging.getLogger(name).setLevel(self.log_level)
        self.log = root

    def _log_request(self, handler: web.RequestHandler) -> None:
        status = handler.get_status()
        level = logging.INFO if status < 400 else logging.WARNING
        if status < 300 and handler.request.path.endswith("/api/health"):
            level = logging.DEBUG
        caller = getattr(handler, "caller", None) or {}
        self.log.log(
            level,
            "%d %s %s (%s@%s) %.2fms",
            status,
            handler.request.method,
            scrub_uri(handler.request.uri or ""),
            caller.get("name", "-"),
            handler.request.remote_ip,
            1000 * handler.request.request_time(),
        )

    def make_app(self) -> web.Application:
        """The tornado application with every route and the shared objects in its settings."""
        prefix = self.service_prefix.rstrip("/") + "/"
        hub_auth = HubOAuth(
            api_url=self.hub_api_url, api_token=self.api_token, base_url=prefix, parent=self
        )
        hub_http = AsyncHTTPClient(force_instance=True, max_clients=self.hub_max_clients)
        streams = StreamingHTTPClient.create(max_clients=self.max_streams)
        hub = HubClient(
            self.hub_api_url,
            self.api_token,
            prefix,
            cache_seconds=self.readiness_cache_seconds,
            http_client=hub_http,
            stream_client=streams,
        )
        forwarder = Forwarder(
            hub,
            self.proxy_url,
            self.api_token,
            streams,
            keepalive_seconds=self.keepalive_seconds,
            liveness_seconds=self.liveness_seconds,
            request_timeout=self.request_timeout,
        )
        routes: list[tuple[str, type]] = [(prefix + "oauth_callback", OAuthCallbackHandler)]
        for pattern, handler in [*default_handlers, *page.handlers, *fallback_handlers]:
            url = url_path_join(prefix, pattern.lstrip("/")) if pattern else prefix
            routes.append((url, handler))
        settings: dict[str, Any] = {
            "hub_auth": hub_auth,
            "hub_client": hub,
            "forwarder": forwarder,
            "service_prefix": prefix,
            "hub_http_client": hub_http,
            "service_token": self.api_token,
            "default_wait": self.default_wait,
            "max_wait": self.max_wait,
            "fanout_concurrency": self.fanout_concurrency,
            "fanout_timeout": self.fanout_timeout,
            "max_body_size": self.max_body_size,
            "cookie_secret": self.cookie_secret,
            "login_url": hub_auth.login_url,
            "log": self.log,
            "log_function": self._log_request,
            "nbexec_service": self,
        }
        return web.Application(routes, **settings)

    def start(self) -> None:  # type: ignore[override]
        if self.generate_config:
            self.write_default_config()
            return
        asyncio.run(self._serve())

    def write_default_config(self) -> None:
        path = "nbexec_service_config.py"
        if os.path.exists(path):
            sys.exit(f"{path} exists; not overwriting it")
        with open(path, "w") as f:
            f.write(self.generate_config_file())
        print(f"Wrote {path}")

    async def _serve(self) -> None:
        files = raise_open_file_limit()
        app = self.make_app()
        server = HTTPServer(app, xheaders=False, max_body_size=self.max_body_size)
        server.listen(self.port, self.ip)
        self.log.info(
            "nbexec %s listening on %s:%d%s; users' servers via %s; open files limit %d",
            __version__, self.ip, self.port, self.service_prefix, self.proxy_url, files,
        )
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        self.log.info("nbexec stopping")
        server.stop()


def main(argv: list[str] | None = None) -> None:
    """Entry point of ``nbexec-hub-service`` and ``python -m nbexec_hub.service``."""
    NbexecService.launch_instance(argv)
