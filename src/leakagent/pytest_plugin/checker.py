"""The pytest plugin at work (loaded only with ``--leakagent``): per-test checks and a summary.

Tracking: when the session runs under the agent (``leakagent pytest ...``, or
``PYTHONPATH=$(leakagent --sitecustomize-dir)``), its tracker is reused; otherwise the agent
is started in this process with the environment's settings, no exit summary and no memory
watcher. Each test takes a :meth:`~leakagent.core.tracker.Tracker.checkpoint` before its set-up and
compares after its call: a call site that created the threshold or more of one kind beyond one
per thread (on one thread: more than the threshold) fails the test with the report's warning
line. The default, :data:`DEFAULT_THRESHOLD`, is not the agent's 50: a test is short, and a
test that builds the same client ten times at one line shows the pattern; an explicit
``LEAKAGENT_THRESHOLD``, the ``--leakagent-threshold`` option, the ini option and the marker
still set it. With pytest-xdist each worker tracks its
own tests and the controller gathers the findings (they travel on the test reports) for the
session summary.
"""

from __future__ import annotations

import fnmatch
import gc
import os

import pytest

from leakagent.core import config as config_mod
from leakagent.core import log
from leakagent.outputs import report as report_mod
from leakagent.runtime import agent as runtime

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Generator, Sequence
    from typing import Any, Optional

    from leakagent.core.tracker import Checkpoint, Tracker

_CHECKPOINT: pytest.StashKey[Checkpoint] = pytest.StashKey()
_FOUND: pytest.StashKey[list[dict[str, Any]]] = pytest.StashKey()
REPORT_ATTRIBUTE = "leakagent_suspects"
"""Findings of a test, on its call-phase ``TestReport`` (travels from xdist workers)."""


DEFAULT_THRESHOLD = 9
"""A test fails from 10 creations at one site on one thread (9 beyond the first): a fixture
building one client per region or tenant (a handful) passes, a loop building one per call
fails within its first ten repetitions."""

def _int_ini(config: pytest.Config, name: str) -> Optional[int]:
    value = str(config.getini(name) or "").strip()
    if not value:
        return None
    try:
        number = int(value)
    except ValueError:
        raise pytest.UsageError(f"ini option {name} = {value!r} is not an integer") from None
    if number < 0:
        raise pytest.UsageError(f"ini option {name} = {value!r} must be >= 0")
    return number


def allowed(site: dict[str, Any], patterns: Sequence[str]) -> bool:
    """True when a pattern names the site's kind (or base kind) or its ``file:line``."""
    for pattern in patterns:
        path, _, line = pattern.rpartition(":")
        if path and line.isdigit():
            if int(line) != site["line"]:
                continue
            file = site["file"].replace("\\", "/")
            shown = report_mod.display_path(site["file"]).replace("\\", "/")
            if fnmatch.fnmatchcase(shown, path) or file.endswith("/" + path.lstrip("/")):
                return True
            if fnmatch.fnmatchcase(file, path):
                return True
        elif fnmatch.fnmatchcase(site["kind"], pattern) or (
            site.get("base") and fnmatch.fnmatchcase(site["base"], pattern)
        ):
            return True
    return False


def failure_message(found: list[dict[str, Any]], threshold: int) -> str:
    """What a failing test says: the report's warning line for each call site."""
    count = len(found)
    lines = [
        f"leakagent: {count} call site{'s' if count != 1 else ''} created the same kind "
        f"{threshold} or more times beyond one per thread during this test:"
    ]
    for site in found:
        lines.append("  " + report_mod.warning_line(site, "suspect", threshold))
    return "\n".join(lines)


class LeakChecker:
    """Registered as the ``leakagent-checker`` plugin when the check is on."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.is_worker = hasattr(config, "workerinput")
        self.is_controller = not self.is_worker and getattr(config.option, "dist", "no") != "no"
        self.tracker: Optional[Tracker] = None
        self.mode = "xdist workers" if self.is_controller else "off"
        self.findings: list[tuple[str, str, list[dict[str, Any]]]] = []
        self.tests_checked = 0
        option = config.getoption("leakagent_threshold")
        threshold = option if option is not None else _int_ini(config, "leakagent_threshold")
        if not self.is_controller:  # the controller runs no test
            self._start_tracking()
        if threshold is None and os.environ.get("LEAKAGENT_THRESHOLD", "").strip():
            agent = runtime.get_agent()
            threshold = agent.config.threshold if agent is not None else config_mod.load().threshold
        self.threshold = DEFAULT_THRESHOLD if threshold is None else threshold

    def _start_tracking(self) -> None:
        agent = runtime.get_agent()
        if agent is not None:
            self.mode = "the running agent"
        else:
            settings = config_mod.load()
            settings.enabled = True  # --leakagent asked for it explicitly
            settings.summary = "never"  # the session summary says it
            settings.memory_watch = False
            agent = runtime.start(settings)
            if agent is None:
                log.warning("--leakagent: the agent could not start; no test is checked")
                return
            agent.tracker.on_suspect = None  # the failing test says it, with its counts
            self.mode = "in-process"
        self.tracker = agent.tracker

    # -- per test -------------------------------------------------------------------------

    def _settings(self, item: pytest.Item) -> tuple[int, tuple[str, ...]]:
        marker = item.get_closest_marker("leakagent")
        if marker is None:
            return self.threshold, ()
        threshold = marker.kwargs.get("threshold", marker.args[0] if marker.args else None)
        allow = marker.kwargs.get("allow", ())
        if isinstance(allow, str):
            allow = (allow,)
        return (self.threshold if threshold is None else int(threshold)), tuple(allow)

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_runtest_setup(self, item: pytest.Item) -> Generator[None, None, None]:
        if self.tracker is not None:
            item.stash[_CHECKPOINT] = self.tracker.checkpoint()
        return (yield)

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_call(self, item: pytest.Item) -> Generator[None, None, None]:
        try:
            result = yield
        except BaseException:
            self._check(item)  # kept for the summary; the test's own failure stands
            raise
        found, threshold = self._check(item)
        if found:
            pytest.fail(failure_message(found, threshold), pytrace=False)
        return result

    def _check(self, item: pytest.Item) -> tuple[list[dict[str, Any]], int]:
        checkpoint = item.stash.get(_CHECKPOINT, None)
        if checkpoint is None or self.tracker is None:
            return [], 0
        self.tests_checked += 1
        threshold, allow = self._settings(item)
        found = self.tracker.since(checkpoint, threshold)
        if found:  # count as live only what a collection would not free (cycles)
            gc.collect()
            found = self.tracker.since(checkpoint, threshold)
        found = [site for site in found if not allowed(site, allow)]
        for site in found:
            site["hint"] = report_mod.hint(site)
            site["threshold"] = threshold
        if found:
            item.stash[_FOUND] = found
        return found, threshold

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(
        self, item: pytest.Item, call: pytest.CallInfo[None]
    ) -> Generator[None, pytest.TestReport, pytest.TestReport]:
        report = yield
        if call.when == "call":
            found = item.stash.get(_FOUND, None)
            if found:
                setattr(report, REPORT_ATTRIBUTE, found)
        return report

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        found = getattr(report, REPORT_ATTRIBUTE, None)
        if found:
            self.findings.append((report.nodeid, report.outcome, found))

    # -- session --------------------------------------------------------------------------

    def pytest_report_header(self, config: pytest.Config) -> str:
        return (
            f"leakagent: fails a test at {self.threshold} creations of one kind at one call "
            f"site beyond one per thread (tracking: {self.mode})"
        )

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if self.is_worker:
            return
        write = terminalreporter.write_line
        terminalreporter.section("leakagent")
        if not self.findings:
            write(
                f"no suspect: no test created one kind of client or threading.local "
                f"{self.threshold} times beyond one per thread at one call site "
                f"(tracking: {self.mode})"
            )
            return
        sites = sum(len(found) for _, _, found in self.findings)
        write(
            f"{sites} suspect call site{'s' if sites != 1 else ''} in {len(self.findings)} "
            f"test{'s' if len(self.findings) != 1 else ''}:"
        )
        for nodeid, outcome, found in self.findings:
            write(f"{nodeid} ({outcome})")
            for number, site in enumerate(found, 1):
                write(f"  {number}. {report_mod.kind_label(site)} — {site['verdict']}")
                write(f"     at {report_mod.where(site)}")
                write(
                    f"     created {site['created']} during the test on {site['threads']} "
                    f"thread{'s' if site['threads'] != 1 else ''} (max {site['max_per_thread']} "
                    f"on {site['max_thread']}, threshold {site.get('threshold', self.threshold)})"
                    f", {site['live']} still alive"
                )
                write(f"     hint: {site.get('hint') or report_mod.hint(site)}")
