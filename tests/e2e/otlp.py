"""OTLP receivers the end-to-end tests start on 127.0.0.1: gRPC (the collector service
definitions of opentelemetry-proto served with grpcio) and HTTP (a small server decoding the
protobuf bodies). They record every request as received on the wire, decoded."""

from __future__ import annotations

import gzip
import threading
import time
import zlib
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable

import grpc
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2, metrics_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue


def value_of(any_value: AnyValue) -> Any:
    field = any_value.WhichOneof("value")
    if field is None:
        return None
    value = getattr(any_value, field)
    if field == "array_value":
        return [value_of(v) for v in value.values]
    if field == "kvlist_value":
        return attrs(value.values)
    return value


def attrs(key_values: Any) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for kv in key_values:
        assert isinstance(kv, KeyValue)
        result[kv.key] = value_of(kv.value)
    return result


class Received:
    """What a receiver got: decoded export requests, in arrival order."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.traces: list[trace_service_pb2.ExportTraceServiceRequest] = []
        self.metrics: list[metrics_service_pb2.ExportMetricsServiceRequest] = []
        self.headers: list[dict[str, str]] = []  # request headers (gRPC metadata), lower-case
        self.slow = False  # hold every request until the receiver stops (a slow collector)
        self.released = threading.Event()

    # -- flattened views ------------------------------------------------------------------

    def spans(self) -> list[dict[str, Any]]:
        """Every span: name, ids, parent, attributes, events, resource, scope."""
        out = []
        with self.lock:
            requests = list(self.traces)
        for request in requests:
            for rs in request.resource_spans:
                resource = attrs(rs.resource.attributes)
                for ss in rs.scope_spans:
                    for span in ss.spans:
                        out.append(
                            {
                                "name": span.name,
                                "trace_id": span.trace_id.hex(),
                                "span_id": span.span_id.hex(),
                                "parent_span_id": span.parent_span_id.hex(),
                                "start": span.start_time_unix_nano,
                                "end": span.end_time_unix_nano,
                                "attributes": attrs(span.attributes),
                                "events": [
                                    {"name": e.name, "attributes": attrs(e.attributes)}
                                    for e in span.events
                                ],
                                "resource": resource,
                                "scope": ss.scope.name,
                            }
                        )
        return out

    def metric_points(self) -> list[dict[str, Any]]:
        """Every data point of every metric export: name, unit, kind, value, attributes."""
        out = []
        with self.lock:
            requests = list(self.metrics)
        for number, request in enumerate(requests):
            for rm in request.resource_metrics:
                resource = attrs(rm.resource.attributes)
                for sm in rm.scope_metrics:
                    for metric in sm.metrics:
                        kind = metric.WhichOneof("data")
                        data = getattr(metric, kind)
                        for point in data.data_points:
                            value = point.as_int if point.HasField("as_int") else point.as_double
                            out.append(
                                {
                                    "request": number,
                                    "name": metric.name,
                                    "unit": metric.unit,
                                    "kind": kind,
                                    "monotonic": getattr(data, "is_monotonic", None),
                                    "value": value,
                                    "attributes": attrs(point.attributes),
                                    "resource": resource,
                                    "scope": sm.scope.name,
                                }
                            )
        return out

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 60.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return True
            time.sleep(0.05)
        return predicate()


class _TraceService(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self, received: Received) -> None:
        self.received = received

    def Export(self, request: Any, context: Any) -> Any:
        if self.received.slow:
            self.received.released.wait(300)
        with self.received.lock:
            self.received.headers.append({k.lower(): v for k, v in context.invocation_metadata()})
            self.received.traces.append(request)
        return trace_service_pb2.ExportTraceServiceResponse()


class _MetricsService(metrics_service_pb2_grpc.MetricsServiceServicer):
    def __init__(self, received: Received) -> None:
        self.received = received

    def Export(self, request: Any, context: Any) -> Any:
        if self.received.slow:
            self.received.released.wait(300)
        with self.received.lock:
            self.received.headers.append({k.lower(): v for k, v in context.invocation_metadata()})
            self.received.metrics.append(request)
        return metrics_service_pb2.ExportMetricsServiceResponse()


class GrpcReceiver:
    """An OTLP/gRPC collector stand-in on 127.0.0.1 (a free port)."""

    def __init__(self) -> None:
        self.received = Received()
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(
            _TraceService(self.received), self.server
        )
        metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server(
            _MetricsService(self.received), self.server
        )
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.endpoint = f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> GrpcReceiver:
        self.server.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.received.released.set()
        self.server.stop(grace=None)


class HttpReceiver:
    """An OTLP/HTTP (protobuf) collector stand-in on 127.0.0.1 (a free port)."""

    def __init__(self) -> None:
        self.received = received = Received()

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length)
                encoding = self.headers.get("Content-Encoding", "")
                if encoding == "gzip":
                    body = gzip.decompress(body)
                elif encoding == "deflate":
                    body = zlib.decompress(body)
                if received.slow:
                    received.released.wait(300)
                with received.lock:
                    received.headers.append({k.lower(): v for k, v in self.headers.items()})
                if self.path == "/v1/traces":
                    request = trace_service_pb2.ExportTraceServiceRequest.FromString(body)
                    with received.lock:
                        received.traces.append(request)
                    answer = trace_service_pb2.ExportTraceServiceResponse()
                elif self.path == "/v1/metrics":
                    metrics = metrics_service_pb2.ExportMetricsServiceRequest.FromString(body)
                    with received.lock:
                        received.metrics.append(metrics)
                    answer = metrics_service_pb2.ExportMetricsServiceResponse()  # type: ignore[assignment]
                else:
                    self.send_error(404)
                    return
                payload = answer.SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> HttpReceiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.received.released.set()
        self.server.shutdown()
        self.server.server_close()
