"""``leakagent report``: the viewer on reports produced by real runs under the launcher."""

from __future__ import annotations

import os
import re
import signal
import stat
import subprocess
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import pytest

from tests.helpers import clean_env, launcher, load_report, run_python_launched, write_script

pytestmark = pytest.mark.timeout(300)

# The seed bug without boto3: a threading.local and a requests.Session made on every call,
# from a thread pool; the sessions are kept (retention). It ends when its report shows the
# series and the suspects (so the run is long enough for a time series), then either exits
# or is SIGKILLed like an OOM-killed container.
PROGRAM = """
    import json, os, signal, sys, threading, time
    from concurrent.futures import ThreadPoolExecutor

    import requests

    KEPT = []


    class Uploader:
        @property
        def session(self):
            local = threading.local()  # BUG: a new local on every call
            if "session" not in local.__dict__:
                local.session = requests.Session()
                KEPT.append(local.session)
            return local.session

        def upload(self, n):
            return self.session is not None


    uploader = Uploader()
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(uploader.upload, range(400)))
    path = os.environ["LEAKAGENT_REPORT"]
    while True:  # bounded by the test's timeout
        try:
            with open(path) as handle:
                data = json.load(handle)
            if len(data["timeseries"]["points"]) >= 3 and len(data["suspects"]) == 2:
                break
        except (OSError, ValueError, KeyError):
            pass
        time.sleep(0.05)
    if sys.argv[1] == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
"""


def _run(tmp_path: Path, how: str) -> tuple[subprocess.CompletedProcess[str], Path]:
    program = write_script(tmp_path, PROGRAM)
    report = tmp_path / "report.json"
    env = clean_env(
        LEAKAGENT_THRESHOLD="20", LEAKAGENT_MEMORY_INTERVAL="0.05", LEAKAGENT_REPORT_INTERVAL="0.1"
    )
    result = run_python_launched(
        program, how, cwd=tmp_path, env=env, options=["--report", str(report)]
    )
    return result, report


def view(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*launcher(), "report", *args],
        cwd=cwd, env=clean_env(PYTHONIOENCODING="utf-8"), capture_output=True, text=True,
        timeout=120,
    )


def test_viewer_shows_the_exit_summary_and_charts(tmp_path: Path) -> None:
    result, report = _run(tmp_path, "exit")
    assert result.returncode == 0, result.stderr
    shown = view(str(report), cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    out = shown.stdout
    # The same summary the process printed at exit (but the path line).
    summary = result.stderr[result.stderr.index("leakagent: 2 suspect call sites") :]
    summary = summary[: summary.index("\n  report: ")]
    assert summary in out
    assert "final (written at exit)" in out
    assert "threading.local — churn" in out
    assert "requests.Session — retention" in out
    assert "memory (RSS) over time" in out
    assert "live instances over time (all tracked call sites):" in out
    assert re.search(r"\d\. requests\.Session at app\.py:\d+ in Uploader\.session", out)
    assert re.search(r"live .*now 400 \(peak 400\)", out)
    assert re.search(r"created .* -> 400", out)
    assert "█" in out


def test_viewer_reads_the_report_of_a_killed_process(tmp_path: Path) -> None:
    result, report = _run(tmp_path, "kill")
    assert result.returncode == -signal.SIGKILL
    assert "suspect call sites" not in result.stderr  # no exit summary: killed
    data = load_report(report)
    assert data["final"] is False
    shown = view(str(report), cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert "NOT final: the process did not exit normally" in shown.stdout
    assert "leakagent: 2 suspect call sites" in shown.stdout
    assert "requests.Session — retention" in shown.stdout


def test_html_output_embeds_svg_charts(tmp_path: Path) -> None:
    _, report = _run(tmp_path, "exit")
    page = tmp_path / "report.html"
    shown = view(str(report), "--html", str(page), cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    text = page.read_text()
    figures = re.findall(r'<figure class="chart"[^>]*>(.*?)</figure>', text, re.S)
    assert len(figures) == 3  # one per suspect, then the process memory
    for svg in figures:
        root = ElementTree.fromstring(svg)  # well-formed SVG
        assert root.tag.endswith("svg")
    assert any("requests.Session at app.py:" in svg for svg in figures[:2])
    assert "Process memory (RSS)" in figures[2]
    # Self-contained: nothing fetched from the web (pygal's tooltip script is left out).
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", text)


def test_ascii_terminal_and_errors(tmp_path: Path) -> None:
    _, report = _run(tmp_path, "exit")
    env = clean_env(PYTHONIOENCODING="ascii")
    shown = subprocess.run(
        [*launcher(), "report", str(report)], env=env, capture_output=True, text=True,
        timeout=120,
    )
    assert shown.returncode == 0, shown.stderr
    assert "#" in shown.stdout
    missing = view(str(tmp_path / "missing.json"), cwd=tmp_path)
    assert missing.returncode == 1
    assert "cannot read" in missing.stderr
    not_report = tmp_path / "other.json"
    not_report.write_text('{"a": 1}')
    assert view(str(not_report), cwd=tmp_path).returncode == 1


def test_a_program_named_report_runs_after_double_dash(tmp_path: Path) -> None:
    script = tmp_path / "report"
    script.write_text("#!/bin/sh\necho program named report \"$@\"\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    env = clean_env(PATH=f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    result = subprocess.run(
        [*launcher(), "--", "report", "x.json"], env=env, capture_output=True, text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "program named report x.json"
