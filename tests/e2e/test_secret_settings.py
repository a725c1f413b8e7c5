"""A malformed OTEL_EXPORTER_OTLP_HEADERS or OTEL_RESOURCE_ATTRIBUTES never shows its value:
one ``leakagent:`` warning names the variable, the SDK's own lines (which quote the value)
stay quiet, the well-formed pairs still work (issue 15 item 10)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.otlp import GrpcReceiver, HttpReceiver
from tests.helpers import clean_env, run_python_launched, write_script

CANARY = "canary-malformed-token"
GOOD_TOKEN = "canary-good-header-token"

PROGRAM = """
import threading, time
import requests
sessions = [requests.Session() for _ in range(3)]
def handle():
    return threading.local()
kept = [handle() for _ in range(12)]
time.sleep(1.5)  # the SDK set up before the exit (Python 3.12+ cannot at exit)
print("done")
"""


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_malformed_headers_and_resource_attributes_never_leak(
    tmp_path: Path, protocol: str
) -> None:
    app = write_script(tmp_path, PROGRAM)
    report = tmp_path / "report.json"
    cls: Any = GrpcReceiver if protocol == "grpc" else HttpReceiver
    with cls() as receiver:
        result = run_python_launched(
            app,
            env=clean_env(
                LEAKAGENT_LOG_LEVEL="INFO",  # the agent's own INFO lines must not quote it either
                LEAKAGENT_OTEL_EXIT_TIMEOUT="20",
                OTEL_EXPORTER_OTLP_HEADERS=f"x-good=Bearer%20{GOOD_TOKEN},junk {CANARY}",
                OTEL_RESOURCE_ATTRIBUTES=f"deployment.environment=test,oops {CANARY}",
            ),
            options=[
                "--otlp", receiver.endpoint, "--otlp-protocol", protocol,
                "--threshold", "10", "--report", str(report),
            ],
        )
        assert result.returncode == 0 and result.stdout == "done\n", result.stderr
        received = receiver.received
        assert received.wait_for(lambda: bool(received.traces) and bool(received.metrics))
        wire = b"".join(r.SerializeToString() for r in [*received.traces, *received.metrics])
        headers = json.dumps(received.headers)
    for name in ("OTEL_EXPORTER_OTLP_HEADERS", "OTEL_RESOURCE_ATTRIBUTES"):
        lines = [line for line in result.stderr.splitlines() if name in line]
        assert len(lines) == 1 and lines[0].startswith("leakagent:"), result.stderr
    assert CANARY not in result.stderr
    assert GOOD_TOKEN not in result.stderr
    assert "Header format invalid" not in result.stderr  # the SDK's own line
    assert "Invalid key value resource attribute" not in result.stderr
    assert CANARY not in report.read_text() and GOOD_TOKEN not in report.read_text()
    assert CANARY.encode() not in wire and CANARY not in headers
    assert b"deployment.environment" in wire  # the well-formed pairs still work
    assert f"Bearer {GOOD_TOKEN}" in headers
