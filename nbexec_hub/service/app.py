"""`NbexecService`: the traitlets application that configures and runs the hub service.

JupyterHub starts it as a managed service (``python -m nbexec_hub.service``) with the
``JUPYTERHUB_*`` environment, from which every trait takes its default. It only gathers
configuration and builds the tornado application; the work is done by `HubClient`,
`Forwarder` and the handlers, which find them in the settings (``hub_auth``,
``hub_client``, ``forwarder``, ``stream_slots``, ``body_budgets``, ``service_prefix``).
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import signal
import sys
from typing import Any
from urllib.parse import urlparse

from jupyterhub.services.auth import HubOAuth
from jupyterhub.utils import url_path_join
from tornado import web
from tornado.httpclient import AsyncHTTPClient
from tornado.httpserver import HTTPServer
from tornado.log import LogFormatter
from traitlets import Bool, Bytes, Float, Integer, Unicode, default
from traitlets.config import Application

from .. import __version__
from . import metrics, metrics_handler, page
from .base import OAuthCallbackHandler
from .bounds import ByteBudgets, RelayLimits, StreamSlots
from .forward import Forwarder
from .handlers import default_handlers, fallback_handlers
from .hubclient import HubClient
from .liveness import Liveness
from .process import proxy_url_from_env, raise_open_file_limit, scrub_uri
from .streaming import StreamingHTTPClient
from .tokens import ServerTokens


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
    server_token_lifetime = Integer(
        3600,
        help="Lifetime in seconds of the per-server tokens the service mints (scope "
        "access:servers!server=U/S) and sends to users' servers instead of its own token. "
        "Renewed 10 minutes (at most half the lifetime) before they expire. A hub whose "
        "token_expires_in_max_seconds is lower gets its maximum.",
    ).tag(config=True)
    server_token_min_renew_seconds = Float(
        30.0,
        help="A per-server token refused by its server is replaced at once, unless it was "
        "minted less than this many seconds ago: a server that refuses every token then "
        "gets its 401/403 passed on instead of making the service mint one per request.",
    ).tag(config=True)
    max_streams_per_caller = Integer(
        100,
        help="Forwarded requests and streams (progress, SSE, chunked runs, spawn progress) "
        "one caller may have in flight at once; past it a new one is answered 429. 0: no "
        "limit.",
    ).tag(config=True)
    max_answer_bytes = Integer(
        64 * 1024 * 1024,
        help="Largest answer (not a stream) relayed from a user's server; a larger one is "
        "a 502. The service holds such an answer whole before sending it.",
    ).tag(config=True)
    max_error_bytes = Integer(
        1024 * 1024,
        help="Largest error body read from a user's server; a larger one is a 502.",
    ).tag(config=True)
    max_event_bytes = Integer(
        64 * 1024 * 1024,
        help="Largest single event (one JSON line) relayed on a stream; a larger one is "
        "skipped and logged.",
    ).tag(config=True)
    max_body_bytes_per_caller = Integer(
        256 * 1024 * 1024,
        help="Bytes of request bodies one caller's requests may hold together while they "
        "are read and forwarded; past it a request is answered 413. 0: no limit beyond "
        "max_body_size per request.",
    ).tag(config=True)
    max_event_bytes_per_caller = Integer(
        128 * 1024 * 1024,
        help="Bytes of unfinished event lines one caller's streams may hold together (a "
        "line is held whole until it ends); a line that would pass it is skipped and "
        "logged. 0: no limit beyond max_event_bytes per stream.",
    ).tag(config=True)
    max_pending_bytes = Integer(
        16 * 1024 * 1024,
        help="Bytes of a stream that may wait for a reader that does not read; past it the "
        "reader is cut (it resumes with Last-Event-ID). From a quarter of it on, the "
        "service stops reading the server's stream until the reader catches up.",
    ).tag(config=True)
    max_fanout_bytes = Integer(
        16 * 1024 * 1024,
        help="Largest executions list read from one server by GET /api/executions; a "
        "larger one marks that server as failed in the answer.",
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
        metrics.observe_request(handler)
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
        # callers' requests share `streams`; the service's own (the hub's spawn progress,
        # liveness probes) have their own client, so no caller can queue them
        streams = StreamingHTTPClient.create(max_clients=self.max_streams)
        own = StreamingHTTPClient.create(max_clients=self.max_streams)
        hub = HubClient(
            hub_auth,
            prefix,
            cache_seconds=self.readiness_cache_seconds,
            http_client=hub_http,
            stream_client=own,
        )
        tokens = ServerTokens(
            hub,
            lifetime=self.server_token_lifetime,
            min_renew_seconds=self.server_token_min_renew_seconds,
        )
        liveness = Liveness(hub, own, self.proxy_url, tokens, interval=self.liveness_seconds)
        limits = RelayLimits(
            keepalive_seconds=self.keepalive_seconds,
            request_timeout=self.request_timeout,
            max_answer_bytes=self.max_answer_bytes,
            max_error_bytes=self.max_error_bytes,
            max_event_bytes=self.max_event_bytes,
            max_pending_bytes=self.max_pending_bytes,
        )
        forwarder = Forwarder(
            hub, tokens, liveness, streams, self.proxy_url, limits,
            ByteBudgets(self.max_event_bytes_per_caller),
        )
        stream_slots = StreamSlots(self.max_streams_per_caller)
        metrics.watch(stream_slots, tokens)
        routes: list[tuple[str, type]] = [(prefix + "oauth_callback", OAuthCallbackHandler)]
        handlers = [
            *default_handlers, *metrics_handler.handlers, *page.handlers, *fallback_handlers
        ]
        for pattern, handler in handlers:
            url = url_path_join(prefix, pattern.lstrip("/")) if pattern else prefix
            routes.append((url, handler))
        settings: dict[str, Any] = {
            "hub_auth": hub_auth,
            "hub_client": hub,
            "forwarder": forwarder,
            "service_prefix": prefix,
            "hub_http_client": hub_http,
            "stream_slots": stream_slots,
            "body_budgets": ByteBudgets(self.max_body_bytes_per_caller),
            "keepalive_seconds": self.keepalive_seconds,
            "max_fanout_bytes": self.max_fanout_bytes,
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
