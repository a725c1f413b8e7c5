"""Existing providers are used, never duplicated: a program that sets its own, and
opentelemetry-instrument in both orders with the launcher. Also: a forked child exports its
own data."""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import marked_line
from tests.e2e.otlp import GrpcReceiver, HttpReceiver
from tests.helpers import clean_env, launcher, run_python_launched, write_script

SPAN_RATE = 5
# Not smaller: the SDK gives the final export at exit one interval as its timeout, and this
# machine may be loaded.
INTERVAL = "1500"

PROGRAM_SET = """
import os
import requests
from opentelemetry import metrics, trace
from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

endpoint = os.environ["APP_ENDPOINT"]
resource = Resource.create({"service.name": "program-set"})
tracer_provider = TracerProvider(resource=resource)
tracer_provider.add_span_processor(
    BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint, insecure=True))
)
trace.set_tracer_provider(tracer_provider)
reader = PeriodicExportingMetricReader(
    OTLPMetricExporter(endpoint=endpoint, insecure=True), export_interval_millis=1500
)
metrics.set_meter_provider(MeterProvider(resource=resource, metric_readers=[reader]))

tracer = trace.get_tracer("app")
for _ in range(60):
    with tracer.start_as_current_span("handle-request"):
        requests.Session()  # per-request-client
print("app done")
"""

API_ONLY = """
import requests
from opentelemetry import trace

tracer = trace.get_tracer("app")
for _ in range(60):
    with tracer.start_as_current_span("handle-request"):
        requests.Session()  # per-request-client
print("app done")
"""


def _leakagent_points(points: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [p for p in points if p["scope"] == "leakagent"]


def _assert_no_duplicates(received: Any, app: Path, expect_service: str) -> None:
    points = _leakagent_points(received.metric_points())
    assert points, "no leakagent metrics received"
    services = {p["resource"].get("service.name") for p in points}
    assert services == {expect_service}, services
    # leakagent's own private providers (marked by telemetry.distro.name) exported nothing.
    assert not [p for p in points if p["resource"].get("telemetry.distro.name") == "leakagent"]
    per_request = Counter(
        (p["request"], p["name"], tuple(sorted(p["attributes"].items()))) for p in points
    )
    assert max(per_request.values()) == 1, "a series appears twice in one export"
    line = marked_line(app, "per-request-client")
    created = [
        p
        for p in points
        if p["name"] == "leakagent.instances.created"
        and p["attributes"].get("code.line.number") == line
    ]
    assert created[-1]["value"] == 60

    spans = received.spans()
    assert len({s["span_id"] for s in spans}) == len(spans), "a span was exported twice"
    requests_spans = {s["span_id"]: s for s in spans if s["name"] == "handle-request"}
    assert len(requests_spans) == 60
    creations = [s for s in spans if s["name"] == "requests.Session"]
    assert len(creations) == SPAN_RATE
    for span in creations:
        assert span["resource"].get("service.name") == expect_service
        assert "telemetry.distro.name" not in span["resource"]
        parent = requests_spans[span["parent_span_id"]]  # made inside the program's span
        assert parent["trace_id"] == span["trace_id"]
        assert span["attributes"]["code.line.number"] == line
    suspects = [s for s in spans if s["attributes"].get("leakagent.suspect") is True]
    assert len(suspects) == 1
    assert suspects[0]["parent_span_id"] in requests_spans


def test_program_sets_its_own_providers(tmp_path: Path) -> None:
    app = write_script(tmp_path, PROGRAM_SET)
    with GrpcReceiver() as receiver:
        result = run_python_launched(
            app,
            env=clean_env(
                APP_ENDPOINT=receiver.endpoint,
                OTEL_SERVICE_NAME="leakagent-env",
                OTEL_METRIC_EXPORT_INTERVAL=INTERVAL,
                LEAKAGENT_OTEL_SPAN_RATE=str(SPAN_RATE),
            ),
            options=["--otlp", receiver.endpoint],
        )
        assert result.returncode == 0, result.stderr
        assert "app done" in result.stdout
        received = receiver.received
        assert received.wait_for(lambda: len(received.spans()) >= 60 + SPAN_RATE + 1)
        _assert_no_duplicates(received, app, "program-set")


def _opentelemetry_instrument(directory: Path) -> str:
    """The opentelemetry-instrument console script of this interpreter (made if absent)."""
    found = shutil.which("opentelemetry-instrument", path=os.path.dirname(sys.executable))
    if found:
        return found
    script = directory / "bin" / "opentelemetry-instrument"
    script.parent.mkdir(exist_ok=True)
    script.write_text(
        f"#!{sys.executable}\n"
        "import sys\n"
        "from opentelemetry.instrumentation.auto_instrumentation import run\n"
        "sys.exit(run())\n"
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return str(script)


@pytest.mark.parametrize("order", ["instrument-first", "leakagent-first"])
def test_with_opentelemetry_instrument(tmp_path: Path, order: str) -> None:
    app = write_script(tmp_path, API_ONLY)
    instrument = _opentelemetry_instrument(tmp_path)
    with GrpcReceiver() as receiver:
        env = clean_env(
            OTEL_TRACES_EXPORTER="otlp",
            OTEL_METRICS_EXPORTER="otlp",
            OTEL_LOGS_EXPORTER="none",
            OTEL_EXPORTER_OTLP_ENDPOINT=receiver.endpoint,
            OTEL_SERVICE_NAME="instrumented",
            OTEL_METRIC_EXPORT_INTERVAL=INTERVAL,
            LEAKAGENT_OTEL_SPAN_RATE=str(SPAN_RATE),
        )
        python = [sys.executable, str(app)]
        if order == "instrument-first":
            command = [instrument, *launcher(), *python]
        else:
            command = [*launcher(), instrument, *python]
        result = subprocess.run(
            command, env=env, capture_output=True, text=True, timeout=120, cwd=tmp_path
        )
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == "app done"
        received = receiver.received
        assert received.wait_for(lambda: len(received.spans()) >= 60 + SPAN_RATE + 1)
        _assert_no_duplicates(received, app, "instrumented")


FORKING = """
import os, sys
import requests

def work(count):
    for _ in range(count):
        requests.Session()  # fork-site

pid = os.fork()
if pid == 0:
    work(7)
    print("child", os.getpid(), flush=True)
    sys.exit(0)
work(3)
os.waitpid(pid, 0)
print("parent", os.getpid(), flush=True)
"""


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_forked_child_exports_its_own_data(tmp_path: Path, protocol: str) -> None:
    app = write_script(tmp_path, FORKING)
    cls: Any = GrpcReceiver if protocol == "grpc" else HttpReceiver
    with cls() as receiver:
        result = run_python_launched(
            app,
            # Two short processes import the SDK at once: give a loaded machine time for it.
            env=clean_env(OTEL_METRIC_EXPORT_INTERVAL=INTERVAL, LEAKAGENT_OTEL_EXIT_TIMEOUT="20"),
            options=["--otlp", receiver.endpoint, "--otlp-protocol", protocol],
        )
        assert result.returncode == 0, result.stderr
        child = int(re.search(r"child (\d+)", result.stdout).group(1))  # type: ignore[union-attr]
        parent = int(re.search(r"parent (\d+)", result.stdout).group(1))  # type: ignore[union-attr]
        line = marked_line(app, "fork-site")
        received = receiver.received

        def created_by_pid() -> dict[int, float]:
            values: dict[int, float] = {}
            for point in received.metric_points():
                if (
                    point["name"] == "leakagent.instances.created"
                    and point["attributes"].get("code.line.number") == line
                ):
                    values[point["resource"]["process.pid"]] = point["value"]
            return values

        assert received.wait_for(lambda: len(created_by_pid()) == 2)
        assert created_by_pid() == {child: 7, parent: 3}
        span_pids = Counter(
            s["resource"]["process.pid"]
            for s in received.spans()
            if s["name"] == "requests.Session"
        )
        assert span_pids == {child: 7, parent: 3}
