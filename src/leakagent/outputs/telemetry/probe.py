"""Where the OTLP exporters send, and whether those collectors are dead (at exit).

Dead means refusing the connection (nothing listens), or accepting it and not answering a
protocol greeting within :data:`ANSWER_TIMEOUT` (a stuck collector, a black hole behind a
port that accepts): flushing to either would only wait for the exit bound. Only plain-text
endpoints are greeted (TLS would need a handshake); anything else lets the exporter decide.
"""

from __future__ import annotations

import os
import socket

from leakagent.outputs.telemetry import Plan

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Optional

OTLP_DEFAULT_ENDPOINTS = {"grpc": "http://localhost:4317", "http/protobuf": "http://localhost:4318"}
PROBE_TIMEOUT = 0.05
"""Seconds a probe of the collector may take at exit (a loopback connect takes ~0.1 ms)."""
ANSWER_TIMEOUT = 0.1
"""Seconds a collector that accepted the connection has to answer the greeting (a live one
answers within a round trip: well under a millisecond on loopback or in a cluster)."""
_H2_GREETING = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"
"""The HTTP/2 client preface and an empty SETTINGS frame: every HTTP/2 server (gRPC) answers
with its own SETTINGS frame."""


def otlp_endpoint(signal: str, protocol: str, environ: Optional[Mapping[str, str]] = None) -> str:
    """The endpoint the OTLP exporter of ``signal`` (TRACES, METRICS) sends to."""
    env = os.environ if environ is None else environ
    return (
        env.get(f"OTEL_EXPORTER_OTLP_{signal}_ENDPOINT", "").strip()
        or env.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip()
        or OTLP_DEFAULT_ENDPOINTS[protocol]
    )


def _parts(endpoint: str) -> Optional[tuple[str, int, str]]:
    """(host, port, scheme) of an endpoint; scheme "" when it has none (``host:port``)."""
    from urllib.parse import urlsplit

    parts = urlsplit(endpoint if "://" in endpoint else "http://" + endpoint)
    try:
        port = parts.port
    except ValueError:
        return None
    if parts.hostname is None:
        return None
    scheme = parts.scheme if "://" in endpoint else ""
    return parts.hostname, port or (443 if parts.scheme == "https" else 80), scheme


def _plain_text(signal: str, protocol: str, scheme: str, environ: Mapping[str, str]) -> bool:
    """Whether the exporter talks to this endpoint without TLS (then it can be greeted)."""
    if scheme == "http":
        return True
    if scheme or protocol != "grpc":
        return False
    # gRPC to host:port: TLS unless the insecure variable says so (the signal's own first,
    # as the exporter reads them)
    insecure = (
        environ.get(f"OTEL_EXPORTER_OTLP_{signal}_INSECURE", "").strip()
        or environ.get("OTEL_EXPORTER_OTLP_INSECURE", "").strip()
    )
    return insecure.lower() == "true"


def _greeting(protocol: str, host: str, port: int) -> bytes:
    if protocol == "grpc":
        return _H2_GREETING
    return f"HEAD / HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n\r\n".encode()


def _answers(sock: socket.socket, greeting: bytes) -> bool:
    """False only when the collector, sent ``greeting``, says nothing within the timeout."""
    try:
        sock.settimeout(ANSWER_TIMEOUT)
        sock.sendall(greeting)
        sock.recv(1)  # a byte, or the end of the connection: somebody is there
    except socket.timeout:  # TimeoutError from 3.10; its own OSError subclass on 3.9
        return False
    except OSError:  # reset, or anything else: let the exporter decide
        return True
    return True


def dead_collectors(plan: Plan, environ: Optional[Mapping[str, str]] = None) -> Optional[str]:
    """What is wrong with the OTLP collectors when every exporter to flush is OTLP and every
    one of their collectors is dead ("URL refused the connection", "URL accepted the
    connection but did not answer"); else None."""
    env = os.environ if environ is None else environ
    # (endpoint, protocol, plain text) -> (host, port): one probe per way of talking to it
    wanted: dict[tuple[str, str, bool], tuple[str, int]] = {}
    for signal, names, protocol in (
        ("TRACES", plan.traces, plan.traces_protocol),
        ("METRICS", plan.metrics, plan.metrics_protocol),
    ):
        for name in names:
            if name == "otlp":
                endpoint = otlp_endpoint(signal, protocol, env)
                parts = _parts(endpoint)
                if parts is None:
                    return None
                host, port, scheme = parts
                plain = _plain_text(signal, protocol, scheme, env)
                wanted[(endpoint, protocol, plain)] = (host, port)
            elif name != "prometheus":
                return None  # the console exporter: always flushed
    if not wanted:
        return None
    refused: list[str] = []
    silent: list[str] = []
    for (endpoint, protocol, plain), (host, port) in wanted.items():
        try:
            sock = socket.create_connection((host, port), timeout=PROBE_TIMEOUT)
        except ConnectionRefusedError:
            refused.append(endpoint)
            continue
        except OSError:  # slow, unresolvable, unreachable: let the exporter decide
            return None
        try:
            if not plain:
                return None
            if _answers(sock, _greeting(protocol, host, port)):
                return None
            silent.append(endpoint)
        finally:
            sock.close()
    refused, silent = list(dict.fromkeys(refused)), list(dict.fromkeys(silent))
    said = []
    if refused:
        said.append(f"{', '.join(refused)} refused the connection")
    if silent:
        said.append(
            f"{', '.join(silent)} accepted the connection but did not answer within "
            f"{ANSWER_TIMEOUT:g} s"
        )
    return "; ".join(said)
