"""The service's browser page: `GET /services/nbexec/` and its static files.

The page is a Jinja template (``templates/nbexec.html``) extending JupyterHub's own
``page.html``, so it carries the hub's stylesheet, navigation bar and login widget. Everything
on it is then filled in by plain JavaScript (``nbexec_hub/static/js``) talking to the
service's API. Templates are found in a checkout (``templates/`` next to the package) and
after ``pip install`` (``<prefix>/share/nbexec-hub/templates``, from setup.cfg data_files).
"""

from __future__ import annotations

import json
import site
import sys
from functools import cache
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from jinja2 import ChoiceLoader, Environment, FileSystemLoader
from tornado import web

from .. import errors
from ..private_apis import hub_data_files_path
from .base import ServiceHandler

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"
#: the template the page renders; its presence marks a directory as ours
PAGE_TEMPLATE = "nbexec.html"


def nbexec_template_dirs() -> list[str]:
    """Directories holding nbexec's templates: a checkout first, then installed copies."""
    candidates = [
        Path(__file__).resolve().parents[2] / "templates",
        Path(sys.prefix, "share", "nbexec-hub", "templates"),
        Path(site.getuserbase(), "share", "nbexec-hub", "templates"),
        Path(sys.base_prefix, "share", "nbexec-hub", "templates"),
    ]
    found: list[str] = []
    for path in candidates:
        if (path / PAGE_TEMPLATE).is_file() and str(path) not in found:
            found.append(str(path))
    return found


def hub_template_dirs() -> list[str]:
    """JupyterHub's own templates (for ``page.html``), from its data files path."""
    candidates = []
    data_files = hub_data_files_path()
    if data_files is not None:
        candidates.append(data_files / "templates")
    candidates += [
        Path(sys.prefix, "share", "jupyterhub", "templates"),
        Path(sys.base_prefix, "share", "jupyterhub", "templates"),
    ]
    return [str(p) for p in candidates if (p / "page.html").is_file()][:1]


@cache
def template_environment() -> Environment:
    """The page's Jinja environment: our templates, then the hub's."""
    ours = nbexec_template_dirs()
    hubs = hub_template_dirs()
    if not ours:
        raise RuntimeError("nbexec's templates are not installed (no nbexec.html found)")
    if not hubs:
        raise RuntimeError("JupyterHub's templates (page.html) were not found")
    loader = ChoiceLoader([FileSystemLoader(ours), FileSystemLoader(hubs)])
    return Environment(loader=loader, autoescape=True)


def _reaches_others(scopes: list[str], me: str) -> bool:
    """Whether some ``access:servers`` scope reaches beyond the caller's own servers."""
    for scope in scopes:
        base, _, only = scope.partition("!")
        if base != "access:servers":
            continue
        if only == f"user={me}" or only.startswith(f"server={me}/"):
            continue
        return True
    return False


class PageStaticHandler(web.StaticFileHandler):
    """The page's JavaScript and CSS, from ``nbexec_hub/static`` (no login needed)."""

    def initialize(self, path: str = str(STATIC_DIR), default_filename: str | None = None) -> None:
        super().initialize(path, default_filename)

    def set_extra_headers(self, path: str) -> None:
        self.set_header("X-Content-Type-Options", "nosniff")
        # the URL carries a content hash (?v=), so a long cache is safe
        if self.get_query_argument("v", None):
            self.set_header("Cache-Control", "max-age=31536000, public")


class PageHandler(ServiceHandler):
    """`GET /`: the page, for the caller's default server, or ``?user=U&server=S``."""

    def hub_url(self, path: str) -> str:
        return self.hub_auth.hub_prefix + path

    def nbexec_static_url(self, path: str) -> str:
        version = PageStaticHandler.get_version({"static_path": str(STATIC_DIR)}, path)
        return f"{self.settings['service_prefix']}static/{path}?v={version}"

    def hub_static_url(self, path: str, include_version: bool = True) -> str:
        return self.hub_url(f"static/{path}")

    async def user_choices(self, target: str) -> list[str]:
        """Users whose default server the caller may use, when that is more than themselves."""
        caller = self.caller or {}
        if not _reaches_others(caller.get("scopes", []), caller.get("name", "")):
            return []
        try:
            names = await self.hub.list_user_names()
        except errors.NbexecError as exc:
            # the page still works for the requested user; only the picker is missing
            self.log.warning("No user picker on the page: %s", exc.message)
            return []
        choices = [name for name in names if self.may_access(name, "")]
        if target not in choices:
            choices.append(target)
        return sorted(choices) if len(choices) > 1 else []

    async def get(self) -> None:
        caller = self.caller or {}
        target = self.get_query_argument("user", "") or (
            caller["name"] if caller.get("kind", "user") == "user" else ""
        )
        if not target:
            raise errors.BadRequest("Say which user's server to show: ?user=NAME")
        server_name = self.get_query_argument("server", "")
        self.check_access(target, server_name)
        # render the token into the page: the cookie alone is not readable before it is set
        xsrf = self.xsrf_token.decode("ascii")
        config = {
            "service_prefix": self.settings["service_prefix"],
            "hub_prefix": self.hub_auth.hub_prefix,
            "user": caller.get("name"),
            "target_user": target,
            "server_name": server_name,
            "xsrf_token": xsrf,
        }
        self.finish(
            self.render_page(
                PAGE_TEMPLATE,
                page_config=config,
                target_user=target,
                server_name=server_name,
                user_choices=await self.user_choices(target),
            )
        )

    def render_page(self, name: str, **extra: Any) -> str:
        """Render one of our templates with the names the hub's page.html expects."""
        caller = self.caller or {}
        user = None
        if caller:
            user = SimpleNamespace(
                name=caller["name"], json_escaped_name=json.dumps(caller["name"])[1:-1]
            )
        namespace = {
            "base_url": self.hub_auth.hub_prefix,
            "prefix": self.hub_auth.hub_prefix[: -len("hub/")] or "/",
            "static_url": self.hub_static_url,
            "nbexec_static_url": self.nbexec_static_url,
            "user": user,
            "admin_access": False,
            "no_spawner_check": True,
            "xsrf_token": self.xsrf_token.decode("ascii"),
            "logo_url": "",
            "parsed_scopes": set(caller.get("scopes", [])),
            "services": [],
            "login_url": self.hub_auth.login_url,
            "logout_url": self.hub_url("logout"),
            "announcement": None,
            "version_hash": "",
        }
        namespace.update(extra)
        return template_environment().get_template(name).render(**namespace)

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        """Errors of a page navigation are shown as a hub-style page, not JSON."""
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(exc, errors.NbexecError):
            message = exc.message
        elif isinstance(exc, web.HTTPError) and exc.log_message:
            message = exc.log_message % exc.args
        else:
            message = self._reason
        try:
            html = self.render_page(
                "error.html", status_code=status_code, status_message=self._reason,
                message=message,
            )
        except Exception:  # a broken template must not hide the original error
            super().write_error(status_code, **kwargs)
            return
        self.set_header("Content-Type", "text/html; charset=UTF-8")
        self.finish(html)


#: (pattern, handler class) pairs relative to the service prefix, added by the service app
handlers: list[tuple[str, type]] = [
    (r"", PageHandler),
    (r"static/(.*)", PageStaticHandler),
]
