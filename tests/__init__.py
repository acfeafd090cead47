"""The test suite of nbexec-hub (a package so that `tests.support` imports absolutely)."""
