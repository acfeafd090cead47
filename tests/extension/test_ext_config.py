"""Configuration reaches each part where it lives: ``c.ExecutionManager``, ``c.WarmKernelPool``,
``c.ExecutionHistory``, and the names that moved off ``c.ExecutionExtensionApp`` still work."""

from __future__ import annotations

import logging

import pytest
from traitlets.config import Config

from nbexec_hub.extension.app import MOVED_TRAITS, ExecutionExtensionApp
from nbexec_hub.extension.durability import ExecutionHistory
from nbexec_hub.extension.manager import ExecutionManager
from nbexec_hub.extension.pool import WarmKernelPool


@pytest.fixture
def jp_server_config():
    return {
        "ServerApp": {"jpserver_extensions": {"nbexec_hub": True}},
        "ExecutionManager": {"max_concurrent_executions": 3, "kernel_start_attempts": 5,
                             "checkpoint_max_interval": 7.5},
        "ExecutionHistory": {"retention_max_count": 17, "logs_in_memory": 2},
        "WarmKernelPool": {"warm_kernels": {}},
        # an old spelling, from before the traits moved: carried over, with a warning
        "ExecutionExtensionApp": {"retention_max_age": 60.0, "keepalive_seconds": 0.5},
    }


def the_app(serverapp) -> ExecutionExtensionApp:
    [app] = serverapp.extension_manager.extension_apps["nbexec_hub"]
    return app


async def test_each_part_reads_its_own_section(jp_serverapp):
    app = the_app(jp_serverapp)
    manager = app.manager
    assert isinstance(manager, ExecutionManager) and manager.parent is app
    assert manager.max_concurrent_executions == 3 and manager.limiter.limit == 3
    assert manager.kernel_start_attempts == 5 and manager.checkpoint_max_interval == 7.5
    assert manager.shutdown_timeout == 15.0  # untouched traits keep their defaults
    history = manager.history
    assert history.retention_max_count == 17 and history.logs_in_memory == 2
    assert app.pool is None  # WarmKernelPool.warm_kernels = {}: no pool
    assert app.keepalive_seconds == 0.5


async def test_a_moved_name_still_works(jp_serverapp):
    app = the_app(jp_serverapp)
    assert app.manager.history.retention_max_age == 60.0
    assert app.config.ExecutionHistory.retention_max_age == 60.0


def test_moved_names_belong_to_exactly_one_part():
    parts = (ExecutionManager, WarmKernelPool, ExecutionHistory)
    names = [n for cls in parts for n in cls.class_trait_names(config=True)]
    assert len(names) == len(set(names)) == len(MOVED_TRAITS)
    assert not set(names) & set(ExecutionExtensionApp.class_trait_names(config=True))
    # the app documents its parts (jupyter server --help-all)
    assert set(ExecutionExtensionApp.classes) >= set(parts)


def test_the_warning_names_the_new_place():
    app = ExecutionExtensionApp(config=Config({"ExecutionExtensionApp": {"warm_kernels": {}}}))
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    app.log.addHandler(handler)
    try:
        app._adopt_moved_config()
    finally:
        app.log.removeHandler(handler)
    assert app.config.WarmKernelPool.warm_kernels == {}
    assert any("c.WarmKernelPool.warm_kernels" in r.getMessage() for r in records)
