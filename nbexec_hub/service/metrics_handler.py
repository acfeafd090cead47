"""`GET /services/nbexec/metrics`: the service's Prometheus metrics, for ``read:metrics``.

As the hub's own ``/hub/metrics``: a caller needs a credential whose scopes include
``read:metrics`` (besides ``access:services!service=nbexec``, like every request to the
service). Without credentials the answer is 401 JSON, not a login redirect: scrapers are
not browsers.
"""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from .. import errors
from .base import ServiceHandler
from .metrics import REGISTRY

READ_METRICS = "read:metrics"


class MetricsHandler(ServiceHandler):
    """`GET /metrics`: the Prometheus text format of `metrics.REGISTRY`."""

    def is_api_request(self) -> bool:
        return True  # 401 JSON without credentials, and the API's CSP

    async def get(self) -> None:
        if not self.hub_auth.check_scopes(READ_METRICS, self.caller):
            raise errors.Forbidden(f"Reading the service's metrics needs the {READ_METRICS} scope")
        self.set_header("Content-Type", CONTENT_TYPE_LATEST)
        self.set_header("Cache-Control", "no-store")
        self.finish(generate_latest(REGISTRY))


#: (pattern relative to the service prefix, handler)
handlers: list[tuple[str, type]] = [(r"metrics", MetricsHandler)]
