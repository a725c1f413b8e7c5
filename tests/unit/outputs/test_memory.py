"""Memory limit discovery, sizes, the watcher's warnings and its bounded time series."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import pytest

from leakagent.core import config as config_mod
from leakagent.core.config import parse_size
from leakagent.core.tracker import Tracker
from leakagent.outputs import memory, memwatch, timeseries


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("536870912", 536870912),
        ("512Mi", 512 * 1024**2),
        ("512MiB", 512 * 1024**2),
        ("1G", 10**9),
        ("1g", 10**9),
        ("1.5Gi", 3 * 1024**3 // 2),
        ("64k", 64_000),
        ("64Ki", 65_536),
        (" 2 Ti ", 2 * 1024**4),
        ("10B", 10),
    ],
)
def test_parse_size(text: str, expected: int) -> None:
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["", "abc", "-1", "1i", "nan", "inf", "1_000", "1X", "Mi"])
def test_parse_size_rejects(text: str) -> None:
    assert parse_size(text) is None


def test_config_memory_settings() -> None:
    config = config_mod.load({})
    assert (config.memory_watch, config.memory_limit, config.memory_warn_at) == (
        True, None, (0.7, 0.9),
    )
    config = config_mod.load(
        {"LEAKAGENT_MEMORY_LIMIT": "none", "LEAKAGENT_MEMORY_WARN_AT": "0.9, 0.5,0.5"}
    )
    assert config.memory_limit == 0
    assert config.memory_warn_at == (0.5, 0.9)
    assert not config.problems
    config = config_mod.load(
        {
            "LEAKAGENT_MEMORY_LIMIT": "big",
            "LEAKAGENT_MEMORY_WARN_AT": "0,1",
            "LEAKAGENT_MEMORY_INTERVAL": "-1",
            "LEAKAGENT_MEMORY_WATCH": "maybe",
        }
    )
    assert config.memory_limit is None
    assert config.memory_warn_at == (0.7, 0.9)
    assert config.memory_interval == 1.0
    assert config.memory_watch is True
    names = [problem.split("=")[0] for problem in config.problems]
    assert names == [
        "LEAKAGENT_MEMORY_WATCH",
        "LEAKAGENT_MEMORY_LIMIT",
        "LEAKAGENT_MEMORY_WARN_AT",
        "LEAKAGENT_MEMORY_INTERVAL",
    ]
    assert all(name in {s.env for s in config_mod.SETTINGS} for name in names)


def _tree(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def test_cgroup_v2_smallest_limit_up_the_hierarchy(tmp_path: Path) -> None:
    _tree(
        tmp_path,
        {
            "proc": "0::/kubepods/pod1/ctr\n",
            "fs/cgroup.controllers": "memory\n",
            "fs/memory.max": "max\n",
            "fs/kubepods/memory.max": "max\n",
            "fs/kubepods/pod1/memory.max": "268435456\n",  # the pod's limit is the smaller
            "fs/kubepods/pod1/ctr/memory.max": "536870912\n",
        },
    )
    assert memory.cgroup_limit(str(tmp_path / "fs"), str(tmp_path / "proc")) == (
        268435456, "cgroup v2 memory.max",
    )


def test_cgroup_v2_inside_a_container_namespace(tmp_path: Path) -> None:
    _tree(
        tmp_path,
        {"proc": "0::/\n", "fs/cgroup.controllers": "memory\n", "fs/memory.max": "1073741824\n"},
    )
    assert memory.cgroup_limit(str(tmp_path / "fs"), str(tmp_path / "proc"))[0] == 1073741824


def test_cgroup_v2_unlimited(tmp_path: Path) -> None:
    _tree(
        tmp_path,
        {"proc": "0::/user.slice\n", "fs/cgroup.controllers": "", "fs/memory.max": "max\n"},
    )
    assert memory.cgroup_limit(str(tmp_path / "fs"), str(tmp_path / "proc")) == (None, None)


def test_cgroup_v1_host_path_missing_in_the_container(tmp_path: Path) -> None:
    # /proc/self/cgroup names the host's path; the container's mount holds its own limit.
    _tree(
        tmp_path,
        {
            "proc": "12:pids:/docker/abc\n4:memory:/docker/abc\n0::/\n",
            "fs/memory/memory.limit_in_bytes": "536870912\n",
        },
    )
    assert memory.cgroup_limit(str(tmp_path / "fs"), str(tmp_path / "proc")) == (
        536870912, "cgroup v1 memory.limit_in_bytes",
    )


def test_cgroup_v1_unlimited_and_no_cgroup(tmp_path: Path) -> None:
    _tree(
        tmp_path,
        {
            "proc": "4:cpuacct,memory:/\n",
            "fs/memory/memory.limit_in_bytes": "9223372036854771712\n",
        },
    )
    assert memory.cgroup_limit(str(tmp_path / "fs"), str(tmp_path / "proc")) == (None, None)
    assert memory.cgroup_limit(str(tmp_path / "fs"), str(tmp_path / "absent")) == (None, None)


def test_resolve_limit_prefers_the_variable() -> None:
    config = config_mod.load({"LEAKAGENT_MEMORY_LIMIT": "1Gi"})
    assert memory.resolve_limit(config) == (1024**3, "LEAKAGENT_MEMORY_LIMIT")
    config = config_mod.load({"LEAKAGENT_MEMORY_LIMIT": "none"})
    assert memory.resolve_limit(config) == (None, None)


def test_resolve_limit_honours_the_cgroup_root(tmp_path: Path) -> None:
    # Whatever this machine's /proc/self/cgroup says (v1, v2 or hybrid), the limit is read
    # below LEAKAGENT_CGROUP_ROOT (shared with the OpenTelemetry layer).
    _tree(
        tmp_path,
        {
            "cgroup.controllers": "memory\n",
            "memory.max": "123456789\n",
            "memory/memory.limit_in_bytes": "123456789\n",
        },
    )
    config = config_mod.load({"LEAKAGENT_CGROUP_ROOT": str(tmp_path)})
    assert memory.resolve_limit(config)[0] == 123456789


def test_read_rss_of_this_process() -> None:
    rss = memory.read_rss()
    assert rss is not None and rss > 1024 * 1024
    assert memory.read_rss("/nonexistent/statm") is None


class _Fake:
    """A memory reading the test sets, and a record of report rewrites."""

    def __init__(self) -> None:
        self.rss: Optional[int] = 10
        self.rewrites = 0

    def read(self) -> Optional[int]:
        return self.rss

    def rewrite(self) -> None:
        self.rewrites += 1


def _watcher(tracker: Tracker, fake: _Fake, **env: str) -> memwatch.MemoryWatcher:
    watcher = memwatch.MemoryWatcher(
        tracker,
        config_mod.load({"LEAKAGENT_MEMORY_INTERVAL": "1", **env}),
        rewrite_report=fake.rewrite,
        report_path=lambda: "/tmp/report.json",
        read=fake.read,
    )
    watcher.series = True
    watcher.limit, watcher.limit_source = 1000, "LEAKAGENT_MEMORY_LIMIT"
    return watcher


class _Obj:
    pass


def test_warns_once_per_fraction_with_growth_since_the_last_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    tracker = Tracker(threshold=1000)
    fake = _Fake()
    watcher = _watcher(tracker, fake)
    kept = []
    for _ in range(5):
        obj = _Obj()
        kept.append(obj)
        tracker.record("lib.Client", ("/app/a.py", 3, "make"), obj)
    fake.rss = 650
    watcher.tick(now=1.0)
    assert watcher.warnings == [] and fake.rewrites == 0
    fake.rss = 750
    watcher.tick(now=2.0)
    assert fake.rewrites == 1
    for _ in range(3):
        obj = _Obj()
        kept.append(obj)
        tracker.record("lib.Client", ("/app/a.py", 3, "make"), obj)
    watcher.tick(now=3.0)  # still above 70 %: no second warning for it
    assert len(watcher.warnings) == 1
    fake.rss = 995  # jumps past 90 %
    watcher.tick(now=4.0)
    fake.rss = 999
    watcher.tick(now=5.0)
    assert [w["fraction"] for w in watcher.warnings] == [0.7, 0.9]
    assert fake.rewrites == 2
    first, second = watcher.warnings
    assert first["top"][0]["growth"] == 5 and second["top"][0]["growth"] == 3
    assert second["top"][0]["live"] == 8
    line = memwatch.warning_line(second, "LEAKAGENT_MEMORY_LIMIT", "/tmp/report.json")
    assert line.startswith("memory at 100% of the limit (RSS 995 B of 1000 B")
    assert "lib.Client at /app/a.py:3 in make +3 live (8 live of 8 created, ~" in line
    assert line.endswith("report rewritten: /tmp/report.json")


def test_warning_without_tracked_growth_says_so() -> None:
    tracker = Tracker()
    fake = _Fake()
    watcher = _watcher(tracker, fake, LEAKAGENT_MEMORY_WARN_AT="0.5")
    fake.rss = 600
    watcher.tick(now=1.0)
    line = memwatch.warning_line(watcher.warnings[0], "cgroup v2 memory.max", None)
    assert "no tracked client or threading.local grew" in line
    assert "report rewritten" not in line


def test_series_is_bounded_and_keeps_the_whole_run() -> None:
    tracker = Tracker()
    fake = _Fake()
    watcher = _watcher(tracker, fake)
    watcher.limit = None
    kept = []
    for second in range(1000):
        obj = _Obj()
        kept.append(obj)
        tracker.record("k", (f"/app/f{second % 60}.py", 1, "f"), obj)
        fake.rss = second
        watcher.tick(now=tracker.started + second)
    series = watcher.sections()["timeseries"]
    points = series["points"]
    assert len(points) <= timeseries.MAX_POINTS
    assert points[0]["t"] == 0.0
    assert points[-1]["t"] >= 1000 - 2 * series["step"]
    assert series["step"] > 1.0
    assert all(len(p["sites"]) <= timeseries.SITES_PER_POINT for p in points)
    assert len(series["sites"]) <= timeseries.MAX_SERIES_SITES
    ids = {site["id"] for site in series["sites"]}
    assert all(entry[0] in ids for p in points for entry in p["sites"])


def test_no_sections_when_switched_off() -> None:
    fake = _Fake()
    watcher = _watcher(Tracker(), fake, LEAKAGENT_MEMORY_WATCH="0")
    assert watcher.sections() == {}
    watcher.start(series=True)  # starts nothing
    assert not watcher.running


@pytest.mark.parametrize(("seconds", "least"), [(2, 15), (5 * 3600, 50)])
def test_series_is_readable_for_a_short_and_a_long_run(seconds: int, least: int) -> None:
    tracker = Tracker()
    series = timeseries.TimeSeries()
    now = tracker.started
    while now <= tracker.started + seconds:
        if now >= series.next_point:
            series.sample(tracker, now, 1)
        now += 0.1 if now - tracker.started < 60 else 1.0  # the watcher's ticks
    points = series.section()["points"]
    assert least <= len(points) <= timeseries.MAX_POINTS
    assert points[-1]["t"] >= seconds - 2 * series.step


def test_a_churning_suspect_is_in_every_point() -> None:
    tracker = Tracker(threshold=3)
    kept = [_Obj() for _ in range(20)]
    for n, obj in enumerate(kept):  # 20 live at 20 sites, none suspect
        tracker.record("k", (f"/app/keep{n}.py", 1, "f"), obj)
    for _ in range(10):  # a suspect that keeps nothing alive
        tracker.record("k", ("/app/churn.py", 1, "f"), _Obj())
    series = timeseries.TimeSeries()
    series.sample(tracker, tracker.started + 1, 1)
    ids = {s["id"]: s["file"] for s in series.section()["sites"]}
    assert "/app/churn.py" in [ids[entry[0]] for entry in series.points[0]["sites"]]
