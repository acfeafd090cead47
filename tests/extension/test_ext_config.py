"""Configuration reaches each part where it lives: ``c.ExecutionManager``,
``c.ExecutionHistory``, the names that moved off ``c.ExecutionExtensionApp`` still work, and
the removed warm pool's settings are said to do nothing."""

from __future__ import annotations

import logging

import pytest
from traitlets.config import Config

from nbexec_hub.extension.app import MOVED_TRAITS, ExecutionExtensionApp
from nbexec_hub.extension.durability import ExecutionHistory
from nbexec_hub.extension.manager import ExecutionManager


@pytest.fixture
def jp_server_config():
    return {
        "ServerApp": {"jpserver_extensions": {"nbexec_hub": True}},
        "ExecutionManager": {"max_concurrent_executions": 3, "kernel_start_attempts": 5,
                             "checkpoint_max_interval": 7.5},
        "ExecutionHistory": {"retention_max_count": 17, "logs_in_memory": 2},
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
    assert app.keepalive_seconds == 0.5


async def test_a_moved_name_still_works(jp_serverapp):
    app = the_app(jp_serverapp)
    assert app.manager.history.retention_max_age == 60.0
    assert app.config.ExecutionHistory.retention_max_age == 60.0


def test_moved_names_belong_to_exactly_one_part():
    parts = (ExecutionManager, ExecutionHistory)
    names = [n for cls in parts for n in cls.class_trait_names(config=True)]
    assert len(names) == len(set(names)) == len(MOVED_TRAITS)
    assert not set(names) & set(ExecutionExtensionApp.class_trait_names(config=True))
    # the app documents its parts (jupyter server --help-all)
    assert set(ExecutionExtensionApp.classes) >= set(parts)


def warnings_of(app, method) -> list[str]:
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    app.log.addHandler(handler)
    try:
        method()
    finally:
        app.log.removeHandler(handler)
    return [r.getMessage() for r in records]


def test_the_warning_names_the_new_place():
    app = ExecutionExtensionApp(
        config=Config({"ExecutionExtensionApp": {"retention_max_count": 5}})
    )
    said = warnings_of(app, app._adopt_moved_config)
    assert app.config.ExecutionHistory.retention_max_count == 5
    assert any("c.ExecutionHistory.retention_max_count" in m for m in said)


def test_the_removed_warm_pool_settings_are_said_to_do_nothing():
    app = ExecutionExtensionApp(config=Config({
        "WarmKernelPool": {"warm_kernels": {"python3": 2}},
        "ExecutionExtensionApp": {"warm_kernel_max_idle": 5.0},
    }))
    [said] = warnings_of(app, app._warn_removed_config)
    assert "c.WarmKernelPool.warm_kernels" in said
    assert "c.ExecutionExtensionApp.warm_kernel_max_idle" in said
    assert "spare_kernel" in said
    assert warnings_of(ExecutionExtensionApp(), ExecutionExtensionApp()._warn_removed_config) == []
