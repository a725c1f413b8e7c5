"""Pure parts of the gate (report files, exit codes) and of the viewer (charts)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from leakagent.tools import gate, viewer
from leakagent.tools.cli import main


def test_parse_code() -> None:
    assert gate.parse_code("86") == 86
    assert gate.parse_code("1") == 1 and gate.parse_code("255") == 255
    for bad in ("0", "256", "-1", "x", ""):
        assert gate.parse_code(bad) is None


def test_report_files_follow_the_naming_of_the_agent(tmp_path: Path) -> None:
    for name in ("r.json", "r.123.json", "r.45.json", "r.x.json", "r.json.bak", "other.json"):
        (tmp_path / name).write_text("{}")
    found = gate.report_files(str(tmp_path / "r.json"))
    assert [Path(p).name for p in found] == ["r.json", "r.123.json", "r.45.json"]
    for name in ("p-7.json", "p-8.json", "p-x.json"):
        (tmp_path / name).write_text("{}")
    found = gate.report_files(str(tmp_path / "p-{pid}.json"))
    assert [Path(p).name for p in found] == ["p-7.json", "p-8.json"]


def _report(tmp_path: Path, name: str, suspects: int, started: str) -> None:
    data = {
        "schema_version": 1,
        "final": True,
        "process": {"pid": 1, "started_at": started},
        "agent": {"threshold": 5},
        "totals": {"created": 0, "sites": 0},
        "suspects": [{}] * suspects,
        "sites": [],
    }
    (tmp_path / name).write_text(json.dumps(data))


def test_read_reports_skips_stale_and_unreadable(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _report(tmp_path, "r.json", 1, "2030-01-01T00:00:00.500Z")
    _report(tmp_path, "r.11.json", 2, "2020-01-01T00:00:00.000Z")  # an earlier run's
    (tmp_path / "r.12.json").write_text("{not json")
    since = gate._iso_seconds("2030-01-01T00:00:00.000Z")
    assert since is not None
    reports = gate.read_reports(str(tmp_path / "r.json"), since)
    assert [Path(p).name for p, _ in reports] == ["r.json"]
    assert "cannot read" in capsys.readouterr().err


def test_verdict() -> None:
    with_suspect = [("r.json", {"suspects": [{}], "final": True})]
    clean = [("r.json", {"suspects": [], "final": True})]
    assert gate._verdict(with_suspect, 0, 86) == 86
    assert gate._verdict(with_suspect, 3, 86) == 3
    assert gate._verdict(clean, 0, 86) == 0
    assert gate._verdict(clean, 3, 86) == 3
    assert gate._verdict([], 0, 86) == 0


def test_chart_and_sparkline() -> None:
    lines = viewer.chart([1, 2, 3, 4], height=4, label=lambda v: f"{v:.0f}")
    assert lines == ["4 ┤   █", "3 ┤  ██", "2 ┤ ███", "1 ┤████"]
    lines = viewer.chart([1, 2], height=4, ceiling=8, label=lambda v: f"{v:.0f}")
    assert lines[0] == "8 ┤-- limit"
    assert viewer.sparkline([0, 4, 8]) == " ▄█"
    # Longer series are folded into columns by their maximum: a peak is never hidden.
    assert viewer.sparkline([0] * 50 + [9] + [0] * 49, width=10).count("█") == 1


def test_viewer_rejects_what_is_not_a_report(tmp_path: Path) -> None:
    path = tmp_path / "x.json"
    path.write_text("[]")
    with pytest.raises(ValueError, match="not a leakagent report"):
        viewer.load(str(path))
    assert main(["report", str(path)]) == viewer.EXIT_UNREADABLE
