"""Where the client's requests go: the hub service for one user's server, or one server.

A target knows its URLs, how to ask for its server's status, whether and how that server
can be started, and the query it adds to execution requests; `NbexecClient` asks its
target instead of branching on what kind it is. Targets are frozen: a client that starts
its server on demand takes a new target rather than changing one it may share.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar
from urllib.parse import quote

from ..protocol import SERVICE_PREFIX, executions_root, server_path
from .errors import NbexecAPIError

#: sends a request the target answers itself (method, URL; never forwarded, so without
#: the start/wait query) and returns its JSON body
Call = Callable[[str, str], Any]


class Target(ABC):
    """Where requests go: the URL the ``executions`` resource hangs below, plus auth."""

    #: ``hub`` (through the service) or ``server`` (straight to a Jupyter server)
    kind: ClassVar[str]
    #: whether the server can be started through this target (``--start``)
    can_start: ClassVar[bool]
    #: whether every server's executions can be listed at once (``--all-servers``)
    can_list_all_servers: ClassVar[bool]
    token: str | None

    @property
    @abstractmethod
    def api_url(self) -> str:
        """URL ending in ``/`` below which ``executions`` lives."""

    @property
    @abstractmethod
    def server_url(self) -> str:
        """The server's own resource: its status at the service, or its base URL."""

    @property
    def extra_query(self) -> Mapping[str, str]:
        """Query parameters added to execution requests (the service's ``start``/``wait``)."""
        return {}

    def executions_url(self, *parts: str) -> str:
        """``…/executions[/part…]``, each part quoted as one path segment."""
        return self.api_url + "executions" + "".join("/" + quote(p, safe="") for p in parts)

    @abstractmethod
    def status(self, call: Call) -> dict[str, Any]:
        """The server's status model (CONTRACT B.3)."""

    @abstractmethod
    def unreachable_status(self, error: NbexecAPIError) -> dict[str, Any] | None:
        """The status to report for a failed status request, or None when it is an error."""

    @abstractmethod
    def start_server(self, call: Call) -> dict[str, Any]:
        """Ask for the server to be started; its status model."""

    @abstractmethod
    def starting(self, wait: int) -> Target:
        """This target, with execution requests that start the server and wait for it."""

    @abstractmethod
    def all_executions_url(self) -> str:
        """The URL listing the executions of every server the token may access."""


@dataclass(frozen=True)
class HubTarget(Target):
    """``user``'s server ``server_name`` through the hub service at ``hub_url``."""

    kind: ClassVar[str] = "hub"
    can_start: ClassVar[bool] = True
    can_list_all_servers: ClassVar[bool] = True

    hub_url: str
    user: str
    server_name: str = ""
    token: str | None = field(default=None, repr=False)  # never in logs
    #: with a value, execution requests start the server and wait this many seconds
    start_wait: int | None = None

    @property
    def service_api_url(self) -> str:
        """``<hub>/services/nbexec/api/``: the service's API root."""
        return self.hub_url.rstrip("/") + "/" + SERVICE_PREFIX + "api/"

    @property
    def api_url(self) -> str:
        return self.service_api_url + executions_root(self.user, self.server_name) + "/"

    @property
    def server_url(self) -> str:
        return self.service_api_url + server_path(self.user, self.server_name)

    @property
    def extra_query(self) -> Mapping[str, str]:
        if self.start_wait is None:
            return {}
        return {"start": "1", "wait": str(self.start_wait)}

    def status(self, call: Call) -> dict[str, Any]:
        return call("GET", self.server_url)

    def unreachable_status(self, error: NbexecAPIError) -> dict[str, Any] | None:
        return None  # the service answers for stopped servers: no answer is a failure

    def start_server(self, call: Call) -> dict[str, Any]:
        return call("POST", self.server_url)

    def starting(self, wait: int) -> HubTarget:
        return replace(self, start_wait=wait)

    def all_executions_url(self) -> str:
        return self.service_api_url + "executions"


@dataclass(frozen=True)
class ServerTarget(Target):
    """One Jupyter server at ``base_url``, with that server's token."""

    kind: ClassVar[str] = "server"
    can_start: ClassVar[bool] = False
    can_list_all_servers: ClassVar[bool] = False

    base_url: str
    token: str | None = field(default=None, repr=False)  # never in logs

    @property
    def server_url(self) -> str:
        return self.base_url.rstrip("/") + "/"

    @property
    def api_url(self) -> str:
        return self.server_url + "api/"

    def status(self, call: Call) -> dict[str, Any]:
        """``ready`` when the server answers (it has no other state to tell)."""
        call("GET", self.api_url + "status")
        return {"state": "ready", "ready": True, "pending": None, "url": self.server_url}

    def unreachable_status(self, error: NbexecAPIError) -> dict[str, Any] | None:
        # nobody else could answer for a server reached directly: silence means stopped
        if error.status is not None:
            return None
        return {"state": "stopped", "ready": False, "message": error.message}

    def start_server(self, call: Call) -> dict[str, Any]:
        raise NbexecAPIError("a server can only be started through the hub service")

    def starting(self, wait: int) -> ServerTarget:
        return self  # a plain server cannot be started: requests go as they are

    def all_executions_url(self) -> str:
        raise NbexecAPIError("listing every server needs the hub service")


def hub_target(hub_url: str, token: str | None, user: str, server_name: str = "") -> HubTarget:
    """The target for ``user``'s server ``server_name`` through the hub service."""
    return HubTarget(hub_url=hub_url, user=user, server_name=server_name, token=token)


def server_target(server_url: str, token: str | None) -> ServerTarget:
    """The target for one Jupyter server at ``server_url`` (its base URL)."""
    return ServerTarget(base_url=server_url, token=token)
