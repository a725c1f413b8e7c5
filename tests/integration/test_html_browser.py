"""The HTML report of a real run of the seed example, as a person sees it in a real browser."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from tests.helpers import EXAMPLES, ROOT, clean_env, launcher, line_of, run_python_launched
from tests.integration.browser import chromium, full_page_screenshot

pytestmark = pytest.mark.timeout(300)
SCREENSHOT = ROOT / "docs" / "report.png"


def test_the_page_shows_the_suspects_first_then_the_charts(tmp_path: Path) -> None:
    seed = tmp_path / "seed_buggy.py"
    shutil.copy(EXAMPLES / "seed_buggy.py", seed)
    report = tmp_path / "report.json"
    result = run_python_launched(
        seed, cwd=tmp_path, env=clean_env(LEAKAGENT_REPORT_INTERVAL="0.5"),
        options=["--report", str(report)],
    )
    assert result.returncode == 0, result.stderr
    page = tmp_path / "report.html"
    page.write_text("stale")
    page.chmod(0o644)  # an existing, world-readable file is made owner-only
    shown = subprocess.run(
        [*launcher(), "report", str(report), "--html", str(page)], cwd=tmp_path,
        env=clean_env(), capture_output=True, text=True, timeout=120,
    )
    assert shown.returncode == 0, shown.stderr
    assert stat.S_IMODE(os.stat(page).st_mode) == 0o600
    line = line_of(seed, "# BUG")
    with chromium() as driver:
        driver.get(page.as_uri())
        title = driver.title
        assert title.startswith("leakagent: seed_buggy.py (pid ") and title.endswith(", final")
        header = driver.find_element("css selector", "header").text
        assert "seed_buggy.py" in header and "final" in header and "started" in header
        cards = driver.find_elements("css selector", "#suspects .card.suspect")
        assert len(cards) == 2 and all(card.is_displayed() for card in cards)
        local = next(card for card in cards if "threading.local" in card.text)
        assert f"seed_buggy.py:{line} in Uploader.client" in local.text
        assert "churn" in local.text and "400" in local.text and "each (estimate)" in local.text
        here = local.find_element("css selector", "pre.code span.here")
        assert here.is_displayed() and "threading.local()" in here.text
        hint = local.find_element("css selector", ".hint")
        assert hint.is_displayed() and "module level" in hint.text and "__init__" in hint.text
        # The hint wraps inside its card: nothing is cut off at the right.
        assert hint.size["width"] <= local.size["width"]
        figures = driver.find_elements("css selector", "#charts figure.chart svg")
        assert len(figures) == 3  # one per suspect, then the process memory
        assert all(f.is_displayed() and f.size["height"] > 200 for f in figures)
        first_chart = driver.find_elements("css selector", "#charts figure.chart")[0]
        assert "created so far" in first_chart.text and "process memory" in first_chart.text
        # Suspect cards come before the charts, the charts before the other sites.
        top = [driver.find_element("css selector", s).location["y"]
               for s in ("#suspects", "#charts", "#others")]
        assert top == sorted(top)
        # Readable on a laptop screen: no horizontal scrolling.
        assert driver.execute_script(
            "return document.documentElement.scrollWidth <= window.innerWidth"
        )
        shot = tmp_path / "report.png"
        full_page_screenshot(driver, str(shot))
    assert shot.read_bytes().startswith(b"\x89PNG")
    if os.environ.get("LEAKAGENT_UPDATE_SCREENSHOT") == "1":
        shutil.copy(shot, SCREENSHOT)
