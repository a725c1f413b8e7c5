"""Test-suite wide settings.

In-process tests run the agent in strict mode: a contained agent error makes the test fail
unless it is marked ``expect_agent_errors``.
"""

from __future__ import annotations

import os

os.environ["LEAKAGENT_STRICT"] = "1"

from collections.abc import Iterator

import pytest

from tests.collectors import SilentCollector, StuckCollector
from tests.helpers import IN_CI

# pytester runs the pytest plugin's own test files (tests/integration/test_pytest_plugin.py).
pytest_plugins = ["pytester"]


@pytest.fixture
def silent() -> Iterator[SilentCollector]:
    """A collector that accepts connections and never answers (tests/collectors.py)."""
    collector = SilentCollector()
    yield collector
    collector.close()


@pytest.fixture
def stuck() -> Iterator[StuckCollector]:
    """A collector that answers the exit probe's greeting, never an export: alive, as far
    as the probe can tell."""
    collector = StuckCollector()
    yield collector
    collector.close()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "expect_agent_errors: the test expects errors contained by the agent"
    )


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """In CI (CI=true) a skipped test fails: every component must be installed there."""
    outcome = yield
    report = outcome.get_result()
    if report.skipped and IN_CI and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        report.longrepr = (
            f"skipped in CI (CI=true), where nothing may be missing: {report.longrepr}"
        )


@pytest.fixture(autouse=True)
def _no_contained_agent_errors(request: pytest.FixtureRequest) -> Iterator[None]:
    from leakagent.core import guard

    before = len(guard.errors)
    yield
    if request.node.get_closest_marker("expect_agent_errors") is None:
        new = guard.errors[before:]
        assert not new, f"the agent contained errors during the test: {new}"
