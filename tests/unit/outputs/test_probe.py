"""The exit probe: which collectors are dead (refusing, or accepting and never answering),
against real sockets on loopback."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest

from leakagent.outputs.telemetry import Plan
from leakagent.outputs.telemetry.probe import dead_collectors


class Listener:
    """A loopback TCP server; ``answer`` bytes are sent back after the first read (None:
    it never answers). Records what it received."""

    def __init__(self, answer: bytes | None) -> None:
        self.answer = answer
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = int(self.sock.getsockname()[1])
        self.received: list[bytes] = []
        self.conns: list[socket.socket] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(conn)
            if self.answer is not None:
                try:
                    self.received.append(conn.recv(4096))
                    conn.sendall(self.answer)
                except OSError:
                    pass

    def close(self) -> None:
        self.sock.close()
        for conn in self.conns:
            conn.close()


@pytest.fixture
def silent() -> Iterator[Listener]:
    listener = Listener(None)
    yield listener
    listener.close()


@pytest.fixture
def live() -> Iterator[Listener]:
    listener = Listener(b"\x00\x00\x00\x04\x00\x00\x00\x00\x00")
    yield listener
    listener.close()


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
    protocol: str, silent: Listener, live: Listener
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
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{live.port}"}
    assert dead_collectors(plan(protocol), env) is None
    greeting = live.received[0]
    if protocol == "grpc":
        assert greeting.startswith(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
    else:
        assert greeting.startswith(b"HEAD / HTTP/1.1\r\n")


def test_one_live_collector_is_enough(silent: Listener, live: Listener) -> None:
    env = {
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": f"http://127.0.0.1:{silent.port}",
        "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": f"http://127.0.0.1:{live.port}",
    }
    assert dead_collectors(plan(), env) is None
    port = closed_port()
    env["OTEL_EXPORTER_OTLP_METRICS_ENDPOINT"] = f"http://127.0.0.1:{port}"
    assert dead_collectors(plan(), env) == (
        f"http://127.0.0.1:{port} refused the connection; http://127.0.0.1:{silent.port} "
        "accepted the connection but did not answer within 0.1 s"
    )


def test_tls_endpoints_are_not_greeted(silent: Listener) -> None:
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


def test_a_console_exporter_is_always_flushed(silent: Listener) -> None:
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{silent.port}"}
    assert dead_collectors(plan(traces=("console",)), env) is None
    assert dead_collectors(plan(traces=(), metrics=("prometheus",)), env) is None
