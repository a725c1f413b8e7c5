"""The exit probe: which collectors are dead (refusing, or accepting and never answering),
against real sockets on loopback."""

from __future__ import annotations

import socket

import pytest

from leakagent.outputs.telemetry import Plan
from leakagent.outputs.telemetry.probe import dead_collectors
from tests.collectors import SilentCollector, StuckCollector


def plan(protocol: str = "grpc", traces: tuple[str, ...] = ("otlp",),
         metrics: tuple[str, ...] = ("otlp",)) -> Plan:
    p = Plan()
    p.traces, p.metrics = traces, metrics
    p.traces_protocol = p.metrics_protocol = protocol
    return p


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_refused_and_silent_are_dead_live_is_not(
    protocol: str, silent: SilentCollector, stuck: StuckCollector
) -> None:
    port = closed_port()
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{port}"}
    assert dead_collectors(plan(protocol), env) == (
        f"http://127.0.0.1:{port} refused the connection"
    )
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{silent.port}"}
    assert dead_collectors(plan(protocol), env) == (
        f"http://127.0.0.1:{silent.port} accepted the connection but did not answer within 0.1 s"
    )
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{stuck.port}"}
    assert dead_collectors(plan(protocol), env) is None
    greeting = stuck.received[0]
    if protocol == "grpc":
        assert greeting.startswith(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
    else:
        assert greeting.startswith(b"HEAD / HTTP/1.1\r\n")


def test_one_live_collector_is_enough(silent: SilentCollector, stuck: StuckCollector) -> None:
    env = {
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": f"http://127.0.0.1:{silent.port}",
        "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": f"http://127.0.0.1:{stuck.port}",
    }
    assert dead_collectors(plan(), env) is None
    port = closed_port()
    env["OTEL_EXPORTER_OTLP_METRICS_ENDPOINT"] = f"http://127.0.0.1:{port}"
    assert dead_collectors(plan(), env) == (
        f"http://127.0.0.1:{port} refused the connection; http://127.0.0.1:{silent.port} "
        "accepted the connection but did not answer within 0.1 s"
    )


def test_tls_endpoints_are_not_greeted(silent: SilentCollector) -> None:
    """TLS would need a handshake: the exporter decides, as before the probe."""
    for protocol, endpoint, insecure in (
        ("grpc", f"https://127.0.0.1:{silent.port}", ""),
        ("http/protobuf", f"https://127.0.0.1:{silent.port}", ""),
        ("grpc", f"127.0.0.1:{silent.port}", ""),  # host:port, gRPC: TLS by default
    ):
        env = {"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint, "OTEL_EXPORTER_OTLP_INSECURE": insecure}
        assert dead_collectors(plan(protocol), env) is None, endpoint
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": f"127.0.0.1:{silent.port}",
           "OTEL_EXPORTER_OTLP_INSECURE": "true"}
    assert dead_collectors(plan("grpc"), env) is not None
    # the signals' own variables come first, as the exporters read them
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": f"127.0.0.1:{silent.port}",
           "OTEL_EXPORTER_OTLP_INSECURE": "false",
           "OTEL_EXPORTER_OTLP_TRACES_INSECURE": "true"}
    assert dead_collectors(plan("grpc", metrics=()), env) is not None
    assert dead_collectors(plan("grpc"), env) is None  # metrics: TLS, not greeted


def test_a_console_exporter_is_always_flushed(silent: SilentCollector) -> None:
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{silent.port}"}
    assert dead_collectors(plan(traces=("console",)), env) is None
    assert dead_collectors(plan(traces=(), metrics=("prometheus",)), env) is None
