"""A malformed OTEL_* value or a Prometheus port that is taken costs only the part it names:
one warning naming the variable, and OTLP export (or the rest) goes on (issue 13 items 7, 8)."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import free_port
from tests.helpers import clean_env, run_python_launched, write_script

PROGRAM = """
import time
import requests
sessions = [requests.Session() for _ in range(3)]
time.sleep(1.5)  # the SDK set up before the exit (Python 3.12+ cannot at exit)
print("ok")
"""

WORKERS = """
import os, sys, time
import requests
children = []
for _ in range(3):
    pid = os.fork()
    if pid == 0:
        requests.Session()
        time.sleep(3)  # past the set-up (on 3.12+ it cannot finish at exit): each asks for the port
        sys.exit(0)
    children.append(pid)
requests.Session()
time.sleep(3)
for pid in children:
    os.waitpid(pid, 0)
print("ok")
"""


def _run(tmp_path: Path, source: str, **env: str) -> Any:
    app = write_script(tmp_path, source)
    return run_python_launched(
        app, env=clean_env(LEAKAGENT_OTEL_EXIT_TIMEOUT="20", LEAKAGENT_SUMMARY="never", **env)
    )


def _created(received: Any) -> list[dict[str, Any]]:
    return [p for p in received.metric_points() if p["name"] == "leakagent.instances.created"]


def _lines(stderr: str, text: str) -> list[str]:
    return [line for line in stderr.splitlines() if text in line]


@pytest.fixture
def taken_port() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(1)
        yield int(sock.getsockname()[1])


def test_malformed_timeout_is_named_and_export_goes_on(tmp_path: Path, grpc_receiver: Any) -> None:
    result = _run(
        tmp_path,
        PROGRAM,
        OTEL_EXPORTER_OTLP_ENDPOINT=grpc_receiver.endpoint,
        OTEL_EXPORTER_OTLP_TIMEOUT="abc",
    )
    assert result.returncode == 0 and result.stdout == "ok\n", result.stderr
    assert len(_lines(result.stderr, "OTEL_EXPORTER_OTLP_TIMEOUT")) == 1, result.stderr
    assert "internal error" not in result.stderr
    received = grpc_receiver.received
    assert received.wait_for(lambda: sum(p["value"] for p in _created(received)) >= 3)
    assert received.wait_for(lambda: bool(received.spans()))


def test_malformed_endpoint_is_named_and_the_other_signal_goes_on(
    tmp_path: Path, grpc_receiver: Any
) -> None:
    result = _run(
        tmp_path,
        PROGRAM,
        OTEL_EXPORTER_OTLP_ENDPOINT="http://[::1",
        OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=grpc_receiver.endpoint,
        OTEL_TRACES_EXPORTER="otlp",
        OTEL_METRICS_EXPORTER="otlp",
    )
    assert result.returncode == 0 and result.stdout == "ok\n", result.stderr
    lines = _lines(result.stderr, "OTEL_EXPORTER_OTLP_ENDPOINT")
    assert len(lines) == 1 and "[::1" not in lines[0], result.stderr
    assert "internal error" not in result.stderr
    received = grpc_receiver.received
    assert received.wait_for(lambda: any(s["name"] == "requests.Session" for s in received.spans()))


def test_unresolvable_prometheus_host_keeps_otlp(tmp_path: Path, grpc_receiver: Any) -> None:
    result = _run(
        tmp_path,
        PROGRAM,
        OTEL_METRICS_EXPORTER="otlp,prometheus",
        OTEL_TRACES_EXPORTER="none",
        OTEL_EXPORTER_OTLP_ENDPOINT=grpc_receiver.endpoint,
        OTEL_EXPORTER_PROMETHEUS_HOST="no.such.host.invalid",
        OTEL_EXPORTER_PROMETHEUS_PORT=str(free_port()),
    )
    assert result.returncode == 0 and result.stdout == "ok\n", result.stderr
    assert len(_lines(result.stderr, "OTEL_EXPORTER_PROMETHEUS_HOST")) == 1, result.stderr
    assert "internal error" not in result.stderr
    received = grpc_receiver.received
    assert received.wait_for(lambda: sum(p["value"] for p in _created(received)) >= 3)


def test_taken_prometheus_port_keeps_otlp_and_is_said_once_by_all_workers(
    tmp_path: Path, grpc_receiver: Any, taken_port: int
) -> None:
    result = _run(
        tmp_path,
        WORKERS,
        OTEL_METRICS_EXPORTER="otlp,prometheus",
        OTEL_TRACES_EXPORTER="none",
        OTEL_EXPORTER_OTLP_ENDPOINT=grpc_receiver.endpoint,
        OTEL_EXPORTER_PROMETHEUS_PORT=str(taken_port),
    )
    assert result.returncode == 0 and result.stdout == "ok\n", result.stderr
    lines = _lines(result.stderr, f"port {taken_port}")
    assert len(lines) == 1 and "taken" in lines[0], result.stderr
    assert "internal error" not in result.stderr
    received = grpc_receiver.received

    def pids() -> set[int]:
        return {p["resource"]["process.pid"] for p in _created(received)}

    assert received.wait_for(lambda: len(pids()) == 4)  # the program and its 3 workers
