"""Shared pytest configuration: plugins every test folder may use."""

pytest_plugins = ["tests.support.realhub"]
