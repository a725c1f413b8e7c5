"""The seed examples under the real launcher and in container mode."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import (
    EXAMPLES,
    clean_env,
    load_report,
    run_container_mode,
    run_python_launched,
    suspects_by_kind,
)


def line_of(path: Path, needle: str) -> int:
    for number, text in enumerate(path.read_text().splitlines(), 1):
        if needle in text:
            return number
    raise AssertionError(f"{needle!r} not in {path}")


@pytest.mark.parametrize("example", ["seed_buggy.py", "seed_attempted_fix.py"])
def test_buggy_accessors_are_reported_at_the_right_lines(example: str, tmp_path: Path) -> None:
    script = EXAMPLES / example
    report_path = tmp_path / "report.json"
    result = run_python_launched(script, options=["--report", str(report_path)], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "uploaded 400 parts\n"

    local_line = line_of(script, "thread_local = threading.local()")
    client_line = line_of(script, "boto3.client(")
    stderr = result.stderr
    # one warning line per suspect, the moment it became one
    warnings = [
        line for line in stderr.splitlines() if line.startswith("leakagent: ") and " times on " in line
    ]
    assert len(warnings) == 2, stderr
    assert any(
        line.startswith("leakagent: threading.local created ")
        and f"{example}:{local_line} in Uploader.client" in line
        for line in warnings
    ), stderr
    assert any(
        line.startswith("leakagent: botocore.client.S3 created ")
        and f"{example}:{client_line} in Uploader.client" in line
        for line in warnings
    ), stderr
    # the exit summary names both
    assert "2 suspect call sites" in stderr

    report = load_report(report_path)
    assert report["schema_version"] == 1 and report["final"] is True
    suspects = suspects_by_kind(report)
    assert set(suspects) == {"threading.local", "botocore.client.S3"}
    for kind, line in (("threading.local", local_line), ("botocore.client.S3", client_line)):
        site = suspects[kind]
        assert site["file"] == str(script) and site["line"] == line
        assert site["function"] == "Uploader.client"
        assert site["created"] == 400 and 1 < site["threads"] <= 8
        assert site["max_per_thread"] > 1
        # flagged 50 creations past one per thread alive at a time, long before the end
        assert site["flagged_after"]["created"] <= 50 + site["concurrency"] + 8
        assert site["verdict"] in ("churn", "retention") and site["hint"]


def test_correct_version_has_no_suspect(tmp_path: Path) -> None:
    script = EXAMPLES / "seed_correct.py"
    report_path = tmp_path / "report.json"
    result = run_python_launched(script, options=["--report", str(report_path)], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "uploaded 400 parts\n"
    assert "leakagent" not in result.stderr
    report = load_report(report_path)
    assert report["suspects"] == []
    clients = [s for s in report["sites"] if s["kind"] == "botocore.client.S3"]
    assert len(clients) == 1 and clients[0]["created"] <= 8 and clients[0]["max_per_thread"] == 1


def test_container_mode_reports_the_same(tmp_path: Path) -> None:
    report_path = tmp_path / "report-{pid}.json"
    env = clean_env(LEAKAGENT_REPORT=str(report_path))
    result = run_container_mode([str(EXAMPLES / "seed_buggy.py")], env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    (written,) = list(tmp_path.glob("report-*.json"))
    report = load_report(written)
    assert written.name == f"report-{report['process']['pid']}.json"
    assert set(suspects_by_kind(report)) == {"threading.local", "botocore.client.S3"}
