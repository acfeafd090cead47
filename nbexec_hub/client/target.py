"""Where the client's requests go: the hub service for one user's server, or one server."""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import quote


@dataclass
class Target:
    """Where requests go: the URL the ``executions`` resource hangs below, plus auth."""

    #: URL ending in ``/`` below which ``executions`` lives
    api_url: str
    token: str | None = None
    #: ``hub`` (through the service) or ``server`` (straight to a Jupyter server)
    kind: str = "server"
    #: for ``hub``: the URL of the user's server status resource
    server_url: str | None = None
    #: query parameters added to execution requests (the service's ``start``/``wait``)
    extra_query: dict[str, str] = field(default_factory=dict)


def hub_target(
    hub_url: str, token: str | None, user: str, server_name: str = ""
) -> Target:
    """The target for ``user``'s server ``server_name`` through the hub service."""
    root = hub_url.rstrip("/") + "/services/nbexec/api/users/" + quote(user, safe="") + "/"
    if server_name:
        server = root + "servers/" + quote(server_name, safe="")
    else:
        server = root + "server"
    return Target(api_url=server + "/" if server_name else root, token=token, kind="hub",
                  server_url=server)


def server_target(server_url: str, token: str | None) -> Target:
    """The target for one Jupyter server at ``server_url`` (its base URL)."""
    return Target(api_url=server_url.rstrip("/") + "/api/", token=token, kind="server",
                  server_url=server_url.rstrip("/") + "/")
