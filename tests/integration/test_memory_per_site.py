"""Memory per call site, measured on a real program under the real launcher (known truth)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import clean_env, line_of, load_report, run_python_launched, write_script

pytestmark = pytest.mark.timeout(300)

CLIENTS = """
    SHARED = [bytearray(1_000_000) for _ in range(10)]  # one 10 MB cache all clients share


    class ApiClient:
        def __init__(self):
            self.buffer = bytearray(1_000_000)  # 1 MB of its own
            self.cache = SHARED
"""

PROGRAM = """
    from myclients import ApiClient

    KEPT = []


    def keep():
        KEPT.append(ApiClient())  # KEEP: retained, 200 alive at the end


    def churn():
        client = ApiClient()  # CHURN: made and dropped
        return client.buffer[0]


    for _ in range(200):
        keep()
    for _ in range(300):
        churn()
    print("done")
"""


def test_live_bytes_of_a_retained_site_and_none_blamed_on_a_churning_one(tmp_path: Path) -> None:
    write_script(tmp_path, CLIENTS, "myclients.py")
    program = write_script(tmp_path, PROGRAM)
    report = tmp_path / "report.json"
    result = run_python_launched(
        program, cwd=tmp_path, env=clean_env(PYTHONPATH=str(tmp_path)),
        options=["--report", str(report), "--target", "myclients:ApiClient"],
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "done\n"
    data = load_report(report)
    sites = {site["line"]: site for site in data["sites"]}
    kept = sites[line_of(program, "# KEEP")]
    churned = sites[line_of(program, "# CHURN")]
    assert kept["live"] == 200
    assert 150_000_000 <= kept["live_bytes"] <= 260_000_000
    assert 900_000 <= kept["bytes_per_instance"] <= 1_200_000  # the shared 10 MB not counted
    assert churned["created"] == 300 and churned["live"] == 0
    assert not churned["live_bytes"]
    # The retention warning and the summary say how much memory it is.
    warning = next(line for line in result.stderr.splitlines() if "(retention" in line)
    assert "MB each, ~" in warning and "MB live" in warning
    assert "memory: ~1.0 MB each, ~200 MB live (estimate)" in result.stderr
