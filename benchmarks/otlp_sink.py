"""A dummy OTLP receiver on 127.0.0.1 for the export rows of the benchmarks.

Accepts OTLP/HTTP (``POST /v1/metrics``, ``/v1/traces``, ``/v1/logs``) and, when ``grpc`` is
importable, OTLP/gRPC (the ``Export`` method of the metrics, trace and logs services), answers
every request with an empty success response and counts what it received. It decodes nothing.

Prints ``grpc=<port> http=<port>`` on its first stdout line (grpc=0 without grpcio), then
serves until killed. ``GET /counts`` on the HTTP port returns the counts as JSON.
"""

from __future__ import annotations

import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

counts: dict[str, int] = {}
_lock = threading.Lock()
_servers: list[object] = []  # a grpc.Server stops when collected: keep it


def _count(name: str) -> None:
    with _lock:
        counts[name] = counts.get(name, 0) + 1


class _Handler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        _count("http " + self.path)
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_GET(self) -> None:
        body = json.dumps(counts).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


def _start_grpc() -> int:
    try:
        from concurrent import futures

        import grpc
    except ImportError:
        return 0
    services = {
        "opentelemetry.proto.collector.metrics.v1.MetricsService": "metrics",
        "opentelemetry.proto.collector.trace.v1.TraceService": "traces",
        "opentelemetry.proto.collector.logs.v1.LogsService": "logs",
    }
    handlers = []
    for service, signal in services.items():

        def export(request: bytes, context: object, signal: str = signal) -> bytes:
            _count("grpc " + signal)
            return b""  # an empty Export*ServiceResponse

        method = grpc.unary_unary_rpc_method_handler(
            export, request_deserializer=None, response_serializer=None
        )
        handlers.append(grpc.method_handlers_generic_handler(service, {"Export": method}))
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4), handlers=handlers)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    _servers.append(server)
    return int(port)


def main() -> None:
    grpc_port = _start_grpc()
    http = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    http.daemon_threads = True
    print(f"grpc={grpc_port} http={http.server_address[1]}", flush=True)
    try:
        http.serve_forever(poll_interval=0.5)
    except KeyboardInterrupt:
        pass
    sys.exit(0)


if __name__ == "__main__":
    main()
