"""Fuzz both APIs with schemathesis from docs/openapi.yaml: never a 5xx, only documented
status codes, and bodies matching their documented schemas.

Each operation gets a bounded number of generated requests, valid ones (positive) and ones
that break the schema (negative), with valid credentials so that they reach the handlers.
The Execution API runs on a real ``jupyter server``; the service on the real hub, acting
on alice's default server (the path's user is pinned to alice for forwarded operations so
that the requests reach her extension; ``start`` is never sent, to not spawn servers).
"""

from __future__ import annotations

import os
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    response_schema_conformance,
    status_code_conformance,
)

from tests.support.openapi_helpers import OPENAPI, load_spec, operations
from tests.support.servers import JupyterServer

SPEC = load_spec()
SCHEMA = schemathesis.openapi.from_path(str(OPENAPI))
#: generated requests per operation and mode (NBEXEC_FUZZ_EXAMPLES raises it locally)
EXAMPLES = int(os.environ.get("NBEXEC_FUZZ_EXAMPLES", "15"))


def _parameters(path: str, method: str) -> list[dict[str, Any]]:
    """The operation's parameters (path-level ones included), references resolved."""
    item = SPEC["paths"][path]
    found = []
    for param in [*item.get("parameters", []), *item[method.lower()].get("parameters", [])]:
        if "$ref" in param:
            param = SPEC["components"]["parameters"][param["$ref"].rsplit("/", 1)[1]]
        found.append(param)
    return found


def cases(ops: list[tuple[str, str]], pinned: set[str]) -> list[Any]:
    """(op, mode) pairs: negative mode only where there is something to break."""
    found = []
    for path, method in ops:
        found.append(pytest.param((path, method), GenerationMode.POSITIVE,
                                  id=f"{method} {path} positive"))
        op = SPEC["paths"][path][method.lower()]
        free = [p for p in _parameters(path, method) if p["name"] not in pinned]
        if free or "requestBody" in op:
            found.append(pytest.param((path, method), GenerationMode.NEGATIVE,
                                      id=f"{method} {path} negative"))
    return found


def _checks(mode: GenerationMode, passthrough: bool) -> list[Any]:
    if mode is GenerationMode.POSITIVE and not passthrough:
        return [not_a_server_error, status_code_conformance, response_schema_conformance]
    if mode is GenerationMode.POSITIVE:
        return [not_a_server_error, status_code_conformance]
    # a request that breaks the schema may get any 4xx; it must never get a 5xx
    return [not_a_server_error]


def fuzz(
    path: str, method: str, mode: GenerationMode, base_url: str, headers: dict[str, str],
    path_parameters: dict[str, str] | None = None,
) -> None:
    operation = SCHEMA[path][method]
    # jupyter_server's own APIs forwarded as they answer (their errors are not our JSON)
    passthrough = "/contents" in path or "/kernelspecs" in path
    session = requests.Session()
    strategy = operation.as_strategy(generation_mode=mode, path_parameters=path_parameters)

    @given(case=strategy)
    @settings(
        max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
        suppress_health_check=list(HealthCheck),
    )
    def run(case: Any) -> None:
        if case.query:
            case.query.pop("start", None)  # the service would spawn servers
            case.query.pop("token", None)  # a wrong query token would mask the header's
        response = case.call(base_url=base_url, session=session, headers=headers, timeout=60)
        case.validate_response(response, checks=_checks(mode, passthrough))

    run()
    session.close()


@pytest.mark.parametrize(("op", "mode"), cases(operations(SPEC, "execution-api"), set()))
def test_fuzz_execution_api(
    op: tuple[str, str], mode: GenerationMode, jupyter_server: JupyterServer
) -> None:
    path, method = op
    fuzz(path, method, mode, jupyter_server.url, jupyter_server.headers)


SERVICE_OPS = [
    op for op in operations(SPEC, "hub-service")
    if "{server_name}" not in op[0]  # same handlers as the default server's routes
    and not op[0].endswith("oauth_callback")  # the hub's OAuth handler, not ours
]


@pytest.mark.parametrize(("op", "mode"), cases(SERVICE_OPS, {"user"}))
def test_fuzz_service(
    op: tuple[str, str], mode: GenerationMode, realhub: Any, alice_token: str, alice_server: Any
) -> None:
    path, method = op
    pinned = {"user": "alice"} if "{user}" in path else None
    fuzz(path, method, mode, realhub.url, {"Authorization": f"token {alice_token}"}, pinned)


@given(name=st.text(min_size=1, max_size=30))
@settings(max_examples=EXAMPLES * 2, deadline=None, database=None, derandomize=True,
          suppress_health_check=list(HealthCheck))
def _user_names(name: str, hub: Any, token: str) -> None:
    from urllib.parse import quote

    url = f"{hub.url}/services/nbexec/api/users/{quote(name, safe='')}/server"
    resp = requests.get(url, headers={"Authorization": f"token {token}"}, timeout=60)
    assert resp.status_code < 500, (name, resp.status_code, resp.text[:300])
    assert resp.headers["Content-Type"].startswith("application/json"), resp.headers


def test_fuzz_service_user_names(realhub: Any, alice_token: str) -> None:
    """Any user name in the path: 403/404 JSON (or 200 for alice), never a 5xx."""
    _user_names(hub=realhub, token=alice_token)
