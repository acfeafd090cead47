"""The one door to other packages' private APIs, each with a version guard and a reason.

nbexec-hub prefers public APIs; where none does the job, the private name is reached here
and nowhere else, so that an upgrade of JupyterHub, tornado or jupyter_server that moves
it breaks one module, and its tests, rather than behaviour scattered across the package.
Each entry says which versions it was written against and what happens when it is gone.

- JupyterHub (``jupyterhub>=6.0``): the rule for which cookie requests need an XSRF token
  (``_xsrf_utils._needs_check_xsrf``, 4.1.4+), the OAuth callback's user cache, the data
  files path.
- tornado (``tornado>=6.5``): closing one running client request's connection from outside.
- jupyter_server (``jupyter_server>=2.4``): a default ``last_activity`` for new kernels.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from tornado.httpclient import HTTPRequest
from tornado.simple_httpclient import SimpleAsyncHTTPClient

# -- JupyterHub ---------------------------------------------------------------------------

try:  # JupyterHub 4.1.4+ (4.1.0 added XSRF checks to HubOAuth, 4.1.4 this helper)
    from jupyterhub._xsrf_utils import _needs_check_xsrf
except ImportError:  # pragma: no cover - older hubs are refused by the package metadata
    _needs_check_xsrf = None


def needs_xsrf_check(handler: Any) -> bool:
    """Whether the hub's HubOAuth would require an XSRF token of this request.

    Used only to tell a caller "XSRF token missing" (403) from "not logged in" (401); the
    hub applies the same rule itself. Without the private helper: any unsafe method.
    """
    if _needs_check_xsrf is not None:
        return bool(_needs_check_xsrf(handler))
    return handler.request.method not in ("GET", "HEAD", "OPTIONS")


def set_oauth_callback_user(handler: Any, user: Any) -> None:
    """Give HubOAuthCallbackHandler the user resolved asynchronously beforehand.

    Its ``current_user`` would otherwise resolve the user with a blocking call on the
    event loop. The attribute is the cache ``HubAuthenticated.get_current_user`` reads
    (JupyterHub 4.1 to 6); if it goes, the handler merely falls back to the blocking path.
    """
    handler._hub_auth_user_cache = user


def hub_data_files_path() -> Path | None:
    """JupyterHub's data files folder (its templates and static files), if it says."""
    try:
        from jupyterhub._data import DATA_FILES_PATH
    except ImportError:  # pragma: no cover - callers then look in sys.prefix/share
        return None
    return Path(DATA_FILES_PATH)


# -- tornado --------------------------------------------------------------------------------

try:  # tornado 6.x
    from tornado.simple_httpclient import _HTTPConnection
except ImportError:  # pragma: no cover - tornado moved it: streams can no longer be cut
    _HTTPConnection = None


if _HTTPConnection is not None:

    class _ClosableConnection(_HTTPConnection):  # type: ignore[misc,valid-type]
        """A connection that registers itself on its request, so it can be closed."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            original = getattr(self.request, "request", self.request)
            original._nbexec_connection = self  # type: ignore[attr-defined]


class ClosableHTTPClient(SimpleAsyncHTTPClient):
    """tornado's simple client whose running requests can be closed by `close_request`.

    tornado offers no public way to abort one fetch; the service must, when the caller of
    a relayed stream goes away (or reads nothing), so that the upstream is freed at once.
    """

    def _connection_class(self) -> type:
        if _HTTPConnection is None:  # pragma: no cover
            return super()._connection_class()
        return _ClosableConnection


def close_request(request: HTTPRequest) -> None:
    """Close the connection of a running request of a `ClosableHTTPClient`, if any."""
    connection = getattr(request, "_nbexec_connection", None)
    stream = getattr(connection, "stream", None)
    if stream is not None and not stream.closed():
        stream.close()


# -- jupyter_server -----------------------------------------------------------------------


def utcnow() -> datetime:
    """The time as jupyter_server stamps ``last_activity`` (aware, UTC)."""
    return datetime.now(timezone.utc)


def give_new_kernels_a_last_activity(kernel_manager_class: type) -> None:
    """A default ``last_activity`` (the first read) on a kernel manager class.

    jupyter_server puts a new kernel in its table one event-loop turn before it sets the
    kernel's ``last_activity``; a ``GET /api/kernels`` or ``/api/status`` landing in that
    turn fails with a 500. This sets a traitlets dynamic default on the class (a no-op
    when the class has no such trait or a default already).
    """
    cls = kernel_manager_class
    if "last_activity" in cls.class_trait_names() and "_last_activity_default" not in vars(cls):
        cls._last_activity_default = lambda self: utcnow()  # type: ignore[attr-defined]
