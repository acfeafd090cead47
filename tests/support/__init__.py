"""Test support shared by the test tiers and the benchmarks (no tests here).

- `realhub`: a real JupyterHub subprocess (`RealHub`) and its fixtures; registered as a
  pytest plugin by tests/conftest.py (``pytest_plugins = ["tests.support.realhub"]``).
- `servers`: ``jupyter server`` subprocesses, free ports, stopping process groups.
- `service_calls`: calls to the hub service as one token's owner, and its streams.
- `hostile_server`: a user's server turned hostile, and a private hub where bob's is.
- `ext_helpers`, `rel_helpers`, `openapi_helpers`: helpers of the extension, reliability
  and OpenAPI tiers (the reliability route walks use the OpenAPI ones too).

Import them absolutely, e.g. ``from tests.support.realhub import RealHub`` or
``from tests.support import servers``; the benchmarks do the same (run them from the
repository root: ``python -m benchmarks.<name>``).
"""
