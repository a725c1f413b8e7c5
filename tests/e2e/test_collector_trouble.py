"""A collector that is down or slow never slows the program beyond the stated exit bound
(LEAKAGENT_OTEL_EXIT_TIMEOUT), and never changes its exit code or its output."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import free_port
from tests.e2e.otlp import GrpcReceiver, HttpReceiver
from tests.helpers import clean_env, launcher, run_python_launched, write_script

EXIT_BOUND = 1.0
# Generous: start-up, imports and the report on a loaded 2-core machine. Without the bound
# the exporters would wait OTEL_EXPORTER_OTLP_TIMEOUT=60 s (and retry) at exit.
SLACK = 15.0

APP = """
import sys
import requests
sessions = [requests.Session() for _ in range(5)]
print("to stdout")
print("to stderr", file=sys.stderr)
sys.exit(3)
"""


def _run(
    app: Path, otlp: list[str] | None, **env: str
) -> tuple[subprocess.CompletedProcess[str], float]:
    started = time.monotonic()
    result = run_python_launched(
        app,
        env=clean_env(
            LEAKAGENT_OTEL_EXIT_TIMEOUT=str(EXIT_BOUND),
            OTEL_EXPORTER_OTLP_TIMEOUT="60",
            OTEL_METRIC_EXPORT_INTERVAL="200",
            **env,
        ),
        options=otlp,
    )
    return result, time.monotonic() - started


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
@pytest.mark.parametrize("trouble", ["down", "slow"])
def test_exit_within_bound_output_unchanged(tmp_path: Path, protocol: str, trouble: str) -> None:
    app = write_script(tmp_path, APP)
    baseline, baseline_time = _run(app, None)
    assert baseline.returncode == 3
    if trouble == "down":
        endpoint = f"http://127.0.0.1:{free_port()}"  # nothing listens there
        result, elapsed = _run(app, ["--otlp", endpoint, "--otlp-protocol", protocol])
    else:
        cls: Any = GrpcReceiver if protocol == "grpc" else HttpReceiver
        with cls() as receiver:
            receiver.received.slow = True  # accepts, then never answers
            result, elapsed = _run(app, ["--otlp", receiver.endpoint, "--otlp-protocol", protocol])
    assert result.returncode == baseline.returncode
    assert result.stdout == baseline.stdout
    assert result.stderr == baseline.stderr
    assert elapsed < baseline_time + EXIT_BOUND + SLACK, (elapsed, baseline_time)


SLEEPER = """
import sys, time
import requests
s = requests.Session()
print("ready", flush=True)
time.sleep(120)
"""


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_sigterm_with_a_slow_collector(tmp_path: Path, protocol: str) -> None:
    """SIGTERM: the flush is bounded too, and the program still dies of SIGTERM."""
    app = write_script(tmp_path, SLEEPER)
    cls: Any = GrpcReceiver if protocol == "grpc" else HttpReceiver
    with cls() as receiver:
        receiver.received.slow = True
        process = subprocess.Popen(
            [
                *launcher(),
                "--otlp",
                receiver.endpoint,
                "--otlp-protocol",
                protocol,
                sys.executable,
                str(app),
            ],
            env=clean_env(
                LEAKAGENT_OTEL_EXIT_TIMEOUT=str(EXIT_BOUND), OTEL_EXPORTER_OTLP_TIMEOUT="60"
            ),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert process.stdout is not None
            assert process.stdout.readline().strip() == "ready"
            time.sleep(0.5)  # let the set-up thread start its exporters (not asserted)
            process.send_signal(signal.SIGTERM)
            started = time.monotonic()
            _, stderr = process.communicate(timeout=EXIT_BOUND + SLACK + 30)
            elapsed = time.monotonic() - started
        finally:
            if process.poll() is None:
                process.kill()
    assert process.returncode == -signal.SIGTERM, stderr
    assert stderr == ""
    assert elapsed < EXIT_BOUND + SLACK
