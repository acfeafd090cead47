"""A Python client for the Execution API, through the hub service or straight to one server.

Two targets share one interface (`NbexecClient`):

- `NbexecClient.for_hub(hub_url, token, user, server_name)` talks to the hub service at
  ``<hub_url>/services/nbexec/api/users/<user>[/servers/<name>]/…`` with a hub API token;
- `NbexecClient.for_server(server_url, token)` talks to one Jupyter server's
  ``<server_url>/api/executions…`` with that server's token.

Models are returned as plain dicts, exactly as the server sends them (CONTRACT A.1). Every
failure is an `NbexecAPIError` carrying the HTTP status (``None`` when no answer came) and
the server's message. Streams are read as they arrive; a stream that drops before its final
event is resumed from the last ``seq`` with ``GET …/progress`` and ``Last-Event-ID``.

The pieces: `api` (the client's calls), `streams` (reading and resuming event streams),
`target` (where requests go: `HubTarget`, `ServerTarget`), `errors` (`NbexecAPIError`).
"""

from __future__ import annotations

from .api import CONNECT_TIMEOUT, READ_TIMEOUT, RESERVED_PARAMS, NbexecClient
from .errors import NbexecAPIError
from .streams import FINAL_EVENTS, Event, EventCallback, iter_stream_events
from .target import HubTarget, ServerTarget, Target, hub_target, server_target

__all__ = [
    "CONNECT_TIMEOUT",
    "FINAL_EVENTS",
    "READ_TIMEOUT",
    "RESERVED_PARAMS",
    "Event",
    "EventCallback",
    "HubTarget",
    "NbexecAPIError",
    "NbexecClient",
    "ServerTarget",
    "Target",
    "hub_target",
    "iter_stream_events",
    "server_target",
]
