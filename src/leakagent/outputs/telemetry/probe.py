"""Where the OTLP exporters send, and whether those collectors refuse connections (exit)."""

from __future__ import annotations

import os

from leakagent.outputs.telemetry import Plan

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Optional

OTLP_DEFAULT_ENDPOINTS = {"grpc": "http://localhost:4317", "http/protobuf": "http://localhost:4318"}
PROBE_TIMEOUT = 0.05
"""Seconds a probe of the collector may take at exit (a loopback connect takes ~0.1 ms)."""


def otlp_endpoint(signal: str, protocol: str, environ: Optional[Mapping[str, str]] = None) -> str:
    """The endpoint the OTLP exporter of ``signal`` (TRACES, METRICS) sends to."""
    env = os.environ if environ is None else environ
    return (
        env.get(f"OTEL_EXPORTER_OTLP_{signal}_ENDPOINT", "").strip()
        or env.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip()
        or OTLP_DEFAULT_ENDPOINTS[protocol]
    )


def _host_port(endpoint: str) -> Optional[tuple[str, int]]:
    from urllib.parse import urlsplit

    parts = urlsplit(endpoint if "://" in endpoint else "http://" + endpoint)
    try:
        port = parts.port
    except ValueError:
        return None
    if parts.hostname is None:
        return None
    return parts.hostname, port or (443 if parts.scheme == "https" else 80)


def refusing_collectors(plan: Plan) -> Optional[str]:
    """The OTLP endpoints, when every exporter to flush is OTLP and every one of their
    collectors refuses the connection (a dead collector: nothing to wait for); else None."""
    import socket

    wanted: list[str] = []
    for signal, names, protocol in (
        ("TRACES", plan.traces, plan.traces_protocol),
        ("METRICS", plan.metrics, plan.metrics_protocol),
    ):
        for name in names:
            if name == "otlp":
                wanted.append(otlp_endpoint(signal, protocol))
            elif name != "prometheus":
                return None  # the console exporter: always flushed
    if not wanted:
        return None
    for endpoint in dict.fromkeys(wanted):
        address = _host_port(endpoint)
        if address is None:
            return None
        try:
            socket.create_connection(address, timeout=PROBE_TIMEOUT).close()
        except ConnectionRefusedError:
            continue
        except OSError:  # slow, unresolvable, unreachable: let the exporter decide
            return None
        return None
    return ", ".join(dict.fromkeys(wanted))
