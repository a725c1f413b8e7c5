"""OTLP over gRPC and over HTTP, asserted as received on the wire by receivers on 127.0.0.1.

A real program runs under the real launcher with ``--otlp``; it builds a requests.Session per
"request" (the bug) inside a request context propagated from a W3C traceparent, so the
creation spans must have that span as parent.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from tests.e2e.conftest import marked_line
from tests.helpers import clean_env, run_python_launched, write_script

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"

APP = f"""
import os, sys, threading
import requests
from opentelemetry import context
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

def handle():
    carrier = {{"traceparent": "00-{TRACE_ID}-{PARENT_ID}-01"}}
    token = context.attach(TraceContextTextMapPropagator().extract(carrier))
    try:
        return requests.Session()  # per-request-client
    finally:
        context.detach(token)

def worker():
    for _ in range(60):
        handle()

thread = threading.Thread(target=worker, name="worker-1")
thread.start()
thread.join()
local = threading.local()  # module-local
kept = [requests.Session() for _ in range(3)]  # kept-sessions
print("pid", os.getpid())
print("app done")
"""

METRICS = {
    "leakagent.instances.created": ("{instance}", "sum", True),
    "leakagent.instances.live": ("{instance}", "sum", False),
    "leakagent.instances.max_per_thread": ("{instance}", "gauge", None),
    "leakagent.thread_local.created": ("{instance}", "sum", True),
    "leakagent.suspects": ("{call_site}", "sum", False),
    "leakagent.call_sites": ("{call_site}", "sum", False),
    "process.memory.usage": ("By", "sum", False),
}
SITE_KEYS = {"leakagent.kind", "code.file.path", "code.line.number", "code.function.name"}


def _last(points: list[dict[str, Any]], name: str, **attributes: Any) -> dict[str, Any]:
    matching = [
        p
        for p in points
        if p["name"] == name and all(p["attributes"].get(k) == v for k, v in attributes.items())
    ]
    assert matching, f"no {name} point with {attributes}"
    return matching[-1]


def test_metrics_and_spans_on_the_wire(tmp_path: Path, receiver: Any) -> None:
    app = write_script(tmp_path, APP)
    env = clean_env(
        OTEL_SERVICE_NAME="wire-test",
        OTEL_RESOURCE_ATTRIBUTES="deployment.environment.name=e2e,team=payments",
        OTEL_METRIC_EXPORT_INTERVAL="1500",
        LEAKAGENT_OTEL_SPAN_RATE="5",
        OTEL_EXPORTER_OTLP_HEADERS="x-tenant=acme,authorization=Bearer%20t0ken",
        # A short program: the SDK import may finish at exit; give a loaded machine time.
        LEAKAGENT_OTEL_EXIT_TIMEOUT="20",
    )
    result = run_python_launched(
        app,
        env=env,
        options=["--otlp", receiver.endpoint, "--otlp-protocol", receiver.protocol],
    )
    assert result.returncode == 0, result.stderr
    assert "app done" in result.stdout
    pid = int(re.search(r"pid (\d+)", result.stdout).group(1))  # type: ignore[union-attr]
    received = receiver.received
    assert received.wait_for(lambda: received.metrics and received.traces, timeout=30)

    # OTEL_EXPORTER_OTLP_HEADERS reach the collector with every request.
    assert received.headers
    for headers in received.headers:
        assert headers["x-tenant"] == "acme"
        assert headers["authorization"] == "Bearer t0ken"

    # -- metrics: names, units, kinds, attributes -----------------------------------------
    points = received.metric_points()
    names = {p["name"] for p in points}
    assert set(METRICS) <= names, names
    for point in points:
        name = point["name"]
        assert not name.endswith("_total") and "bytes" not in name and "{" not in name
        if name in METRICS:
            unit, kind, monotonic = METRICS[name]
            assert point["unit"] == unit, point
            assert point["kind"] == kind, point
            if monotonic is not None:
                assert point["monotonic"] is monotonic, point
            assert point["scope"] == "leakagent"
    line = marked_line(app, "per-request-client")
    site = {"code.file.path": str(app), "code.line.number": line, "code.function.name": "handle"}
    created = _last(points, "leakagent.instances.created", **site)
    assert created["value"] == 60
    assert created["attributes"]["leakagent.kind"] == "requests.Session"
    assert set(created["attributes"]) == SITE_KEYS  # never an argument value
    suspect = _last(points, "leakagent.suspects", **site)
    assert suspect["value"] == 1
    assert suspect["attributes"]["leakagent.verdict"] in ("churn", "retention")
    kept = _last(
        points,
        "leakagent.instances.live",
        **{"code.line.number": marked_line(app, "kept-sessions")},
    )
    assert kept["value"] == 3
    local = _last(
        points,
        "leakagent.thread_local.created",
        **{"code.line.number": marked_line(app, "module-local")},
    )
    assert local["value"] == 1 and local["attributes"]["leakagent.kind"] == "threading.local"
    # The exporters' own clients (the HTTP exporter's requests.Session) are not counted.
    sessions = {
        p["attributes"]["code.file.path"]
        for p in points
        if p["name"] == "leakagent.instances.created"
        and p["attributes"].get("leakagent.kind") == "requests.Session"
    }
    assert sessions == {str(app)}
    memory = _last(points, "process.memory.usage")
    assert memory["value"] > 1_000_000

    # -- resource --------------------------------------------------------------------------
    resource = created["resource"]
    assert resource["service.name"] == "wire-test"
    assert resource["deployment.environment.name"] == "e2e"
    assert resource["team"] == "payments"
    assert resource["process.pid"] == pid
    assert resource["process.executable.path"]
    assert resource["process.runtime.name"] == "cpython"
    assert resource["process.runtime.version"]

    # -- spans: kind name, code attributes, thread, parent, rate limit, suspect -------------
    spans = received.spans()
    creations = [
        s
        for s in spans
        if s["name"] == "requests.Session" and s["attributes"]["code.line.number"] == line
    ]
    assert len(creations) == 5, [s["attributes"] for s in creations]  # rate-limited
    for span in creations:
        attributes = span["attributes"]
        assert attributes["code.file.path"] == str(app)
        assert attributes["code.function.name"] == "handle"
        assert attributes["thread.name"] == "worker-1"
        assert isinstance(attributes["thread.id"], int)
        assert attributes["leakagent.kind"] == "requests.Session"
        assert span["trace_id"] == TRACE_ID
        assert span["parent_span_id"] == PARENT_ID
        assert span["end"] >= span["start"] > 0
        assert span["resource"]["service.name"] == "wire-test"
    suspects = [s for s in spans if s["attributes"].get("leakagent.suspect") is True]
    assert len(suspects) == 1
    (suspect_span,) = suspects
    assert suspect_span["attributes"]["code.line.number"] == line
    assert suspect_span["attributes"]["leakagent.created"] == 41  # default threshold 40
    assert suspect_span["parent_span_id"] == PARENT_ID  # it happened inside the request
    assert [e["name"] for e in suspect_span["events"]] == ["leakagent.suspect"]
    assert len({s["span_id"] for s in spans}) == len(spans)  # each span once
    # Spans outside any request context are roots.
    kept_spans = [
        s
        for s in spans
        if s["attributes"].get("code.line.number") == marked_line(app, "kept-sessions")
    ]
    assert kept_spans and all(s["parent_span_id"] == "" for s in kept_spans)


MANY_SITES = """
import requests
a = requests.Session()  # site-1
b = requests.Session()  # site-2
c = [requests.Session() for _ in range(3)]  # site-3
d = [requests.Session() for _ in range(4)]  # site-4
e = requests.Session()  # site-5
"""


def test_series_cap_overflow_and_traces_off(tmp_path: Path, grpc_receiver: Any) -> None:
    """LEAKAGENT_OTEL_MAX_SERIES bounds the call-site series; the rest is one overflow series.
    OTEL_TRACES_EXPORTER=none: metrics only, no span at all."""
    app = write_script(tmp_path, MANY_SITES)
    result = run_python_launched(
        app,
        env=clean_env(
            LEAKAGENT_OTEL_MAX_SERIES="2",
            LEAKAGENT_OTEL_EXIT_TIMEOUT="20",  # a short program: the SDK is imported at exit
            LEAKAGENT_TRACK_LOCALS="0",  # only the 10 sessions (gRPC's import makes a local)
            OTEL_TRACES_EXPORTER="none",
            OTEL_METRICS_EXPORTER="otlp",
            OTEL_EXPORTER_OTLP_ENDPOINT=grpc_receiver.endpoint,
        ),
    )
    assert result.returncode == 0, result.stderr
    received = grpc_receiver.received
    assert received.wait_for(lambda: bool(received.metrics))
    last = max(p["request"] for p in received.metric_points())
    created = [
        p
        for p in received.metric_points()
        if p["name"] == "leakagent.instances.created" and p["request"] == last
    ]
    own = [p for p in created if "code.line.number" in p["attributes"]]
    overflow = [p for p in created if p["attributes"].get("otel.metric.overflow") is True]
    assert len(own) == 2
    assert len(overflow) == 1
    assert overflow[0]["attributes"] == {"otel.metric.overflow": True}
    assert sum(p["value"] for p in created) == 10  # nothing lost, nothing counted twice
    assert received.traces == []
