"""Tests of the Python client and the `nbexec` command."""
