"""The memory-limit early warning, with a program that really grows under the launcher."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import clean_env, load_report, run_python_launched, write_script

pytestmark = pytest.mark.timeout(300)

# Retained requests.Session objects, each holding 1 MiB of touched memory, until the report
# (rewritten at once by each warning) holds both warnings; bounded (600 MiB by default) in
# case the warning never comes (the test then fails on its assertions). Paced: unpaced, the
# loop reaches 600 MiB in ~0.3 s on a fast machine, before the watcher (every 20 ms, on a
# thread that waits for the GIL) has measured and written both warnings.
GROWING = """
    import json, os, sys, time
    import requests

    KEEP = []


    def make_session():
        session = requests.Session()  # SESSION SITE
        session.payload = b"\\x01" * (1 << 20)
        return session


    def warnings_in_report():
        try:
            with open(os.environ["LEAKAGENT_REPORT"]) as handle:
                return len(json.load(handle).get("memory", {}).get("warnings", []))
        except (OSError, ValueError):
            return 0


    for _ in range(int(sys.argv[2])):
        KEEP.append(make_session())
        time.sleep(0.003)  # a real leak grows over time, not 1 GiB/s
        if warnings_in_report() >= int(sys.argv[1]):
            break
    print("allocated", len(KEEP), "MiB")
"""

SESSION_LINE = 9


def _run(tmp_path: Path, wanted: int, most: int = 600, **env: str):  # type: ignore[no-untyped-def]
    program = write_script(tmp_path, GROWING)
    assert program.read_text().splitlines()[SESSION_LINE - 1].endswith("# SESSION SITE")
    report = tmp_path / "report.json"
    settings = {
        "LEAKAGENT_MEMORY_INTERVAL": "0.02",
        # No periodic rewrite during the run: only a warning can put itself in the report
        # before the program ends.
        "LEAKAGENT_REPORT_INTERVAL": "3600",
        "LEAKAGENT_THRESHOLD": "100000",  # no suspect: only the memory speaks
        **env,
    }
    result = run_python_launched(
        program, str(wanted), str(most), cwd=tmp_path, env=clean_env(**settings),
        options=["--report", str(report)],
    )
    return result, report


def test_warns_at_each_fraction_naming_the_growing_clients(tmp_path: Path) -> None:
    result, report = _run(tmp_path, 2, LEAKAGENT_MEMORY_LIMIT="192Mi")
    assert result.returncode == 0, result.stderr
    allocated = int(result.stdout.split()[1])
    assert allocated < 600, "the program never saw both warnings in its report"
    lines = [line for line in result.stderr.splitlines() if "of the limit" in line]
    assert len(lines) == 2, result.stderr
    for line, fraction in zip(lines, ("70%", "90%")):
        assert line.startswith("leakagent: memory at ")
        assert f"of 192.0 MiB, LEAKAGENT_MEMORY_LIMIT; warns at {fraction})" in line
        assert f"requests.Session at app.py:{SESSION_LINE} in make_session +" in line
        assert f"report rewritten: {report} [pid " in line  # the pid tag ends each line
    data = load_report(report)
    memory = data["memory"]
    assert memory["limit"] == 192 * 1024 * 1024
    assert memory["limit_source"] == "LEAKAGENT_MEMORY_LIMIT"
    assert [w["fraction"] for w in memory["warnings"]] == [0.7, 0.9]
    first, second = memory["warnings"]
    assert first["rss"] >= 0.7 * memory["limit"]
    assert second["rss"] >= 0.9 * memory["limit"]
    for warning in memory["warnings"]:
        top = warning["top"][0]
        assert (top["kind"], top["line"], top["function"]) == (
            "requests.Session", SESSION_LINE, "make_session",
        )
        assert top["growth"] > 0
    # The growth of the second warning is counted from the first.
    assert second["top"][0]["live"] == first["top"][0]["live"] + second["top"][0]["growth"]
    # The time series follows the growth: memory and live sessions go up.
    points = data["timeseries"]["points"]
    assert len(points) >= 2
    assert points[-1]["rss"] > points[0]["rss"]
    assert points[-1]["live"] >= allocated


def test_no_limit_no_warning(tmp_path: Path) -> None:
    result, report = _run(tmp_path, 1, 40, LEAKAGENT_MEMORY_LIMIT="none")
    assert result.returncode == 0, result.stderr
    assert "of the limit" not in result.stderr
    memory = load_report(report)["memory"]
    assert memory["limit"] is None
    assert memory["warnings"] == []


def test_malformed_limit_is_one_warning_naming_the_variable(tmp_path: Path) -> None:
    program = write_script(tmp_path, "print('ok')\n")
    result = run_python_launched(
        program, env=clean_env(LEAKAGENT_MEMORY_LIMIT="lots", LEAKAGENT_MEMORY_WARN_AT="2")
    )
    assert result.returncode == 0
    assert result.stdout.strip() == "ok"
    problems = [line for line in result.stderr.splitlines() if line.startswith("leakagent:")]
    assert len(problems) == 2, result.stderr
    assert "LEAKAGENT_MEMORY_LIMIT='lots' is not a size in bytes" in problems[0]
    assert "LEAKAGENT_MEMORY_WARN_AT='2' is not comma-separated fractions" in problems[1]
