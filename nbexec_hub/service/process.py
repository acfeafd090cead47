"""What the service takes from its process and environment: where the proxy is, how many
files it may open, and request URIs made safe to log."""

from __future__ import annotations

import os
import re
from urllib.parse import urlparse, urlunparse

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
