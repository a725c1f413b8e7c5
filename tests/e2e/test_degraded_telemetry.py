"""Broken telemetry set-ups degrade the agent, never the program: one warning, report works."""

from __future__ import annotations

from pathlib import Path

from tests.e2e.conftest import free_port
from tests.helpers import clean_env, load_report, run_python_launched, write_script

PROGRAM = """
import threading, time
for _ in range(30):
    threading.local()
time.sleep(1.5)  # the set-up runs (and finds the broken install) before the exit: with a dead
print("ok")      # collector and nothing pending, the exit does not wait for the SDK
"""


def test_broken_opentelemetry_install(tmp_path: Path) -> None:
    shim = tmp_path / "shim" / "opentelemetry"
    shim.mkdir(parents=True)
    (shim / "__init__.py").write_text("raise ImportError('half-installed opentelemetry')\n")
    script = write_script(tmp_path, PROGRAM)
    env = clean_env(PYTHONPATH=str(shim.parent), LEAKAGENT_STRICT="0")
    result = run_python_launched(
        script, env=env,
        options=["--otlp", f"127.0.0.1:{free_port()}", "--report", str(tmp_path / "r.json"),
                 "--threshold", "10"],
    )
    assert result.returncode == 0 and result.stdout == "ok\n", result.stderr
    assert result.stderr.count("half-installed opentelemetry") == 1, result.stderr
    assert load_report(tmp_path / "r.json")["suspects"][0]["created"] == 30


def test_malformed_otel_variables_warn_once_each(tmp_path: Path) -> None:
    script = write_script(tmp_path, PROGRAM)
    env = clean_env(
        OTEL_TRACES_EXPORTER="zipkin-bogus",
        OTEL_METRICS_EXPORTER="otlp",
        OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{free_port()}",
        OTEL_EXPORTER_OTLP_PROTOCOL="carrier-pigeon",
        OTEL_METRIC_EXPORT_INTERVAL="-5",
        OTEL_EXPORTER_OTLP_TIMEOUT="1000",
        LEAKAGENT_OTEL_EXIT_TIMEOUT="1",
    )
    result = run_python_launched(
        script, env=env,
        options=["--report", str(tmp_path / "r.json"), "--threshold", "10"],
    )
    assert result.returncode == 0 and result.stdout == "ok\n", result.stderr
    for name in ("OTEL_TRACES_EXPORTER", "OTEL_EXPORTER_OTLP_PROTOCOL",
                 "OTEL_METRIC_EXPORT_INTERVAL"):
        lines = [line for line in result.stderr.splitlines() if name in line]
        assert len(lines) == 1, (name, result.stderr)
    assert load_report(tmp_path / "r.json")["suspects"][0]["created"] == 30
