"""The set-up: private providers, exporters (wrapped quiet), resource, final flush.

The instruments live in :mod:`._instruments`, the spans in :mod:`._spans`.

Imported only by the background set-up thread of :mod:`leakagent.outputs.telemetry`, and only when
export is configured.

Providers. leakagent never installs a global provider (a program that sets its own later
would be refused). It keeps private providers for the configured exporters and, at every
use, prefers a real (SDK) global provider when the program or ``opentelemetry-instrument``
has installed one:

* spans go to the global SDK tracer provider when there is one, else to the private one;
* the instruments are registered twice, on the global meter (through the API's proxy, so
  they come alive when a global provider is set, even later) and on the private meter; each
  callback reports only when its side is the active one, so a collection never yields the
  same series from both providers.

Nothing here runs on the program's hot path: metrics are observable instruments that read
the tracker at collection time; spans are made on the creating thread, rate-limited per call
site, for the few creations that pass the limit.
"""

from __future__ import annotations

import _thread
import errno
import logging
import os
import socket
import sys
import threading
import time
from contextvars import ContextVar

from opentelemetry import metrics as otel_metrics
from opentelemetry import trace as otel_trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    MetricExporter,
    MetricExportResult,
    MetricReader,
    MetricsData,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

from leakagent._version import __version__
from leakagent.core import log
from leakagent.outputs.memory import resolve_limit
from leakagent.outputs.telemetry import Plan
from leakagent.outputs.telemetry._instruments import Instruments
from leakagent.outputs.telemetry._spans import SCOPE, Spans
from leakagent.outputs.telemetry.limits import SeriesMap, SpanLimiter
from leakagent.outputs.telemetry.values import sensitive_fragments

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Any, Callable, Optional

    from opentelemetry.trace import Tracer

    from leakagent.core.config import Config
    from leakagent.core.tracker import Tracker

_quiet: ContextVar[bool] = ContextVar("leakagent_quiet_export", default=False)
_silent: ContextVar[bool] = ContextVar("leakagent_silent_setup", default=False)
"""Set while leakagent builds the resource and the exporters: the SDK's records then may
quote a malformed value (a token in a header): dropped, never repeated."""
_said_export_error = False


class _QuietFilter(logging.Filter):
    """Drops the SDK's log records emitted while leakagent's own exporters run.

    A collector that is down must not change the program's output: the first failure is said
    once on the 'leakagent' logger at INFO level instead.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if _silent.get():
            return False
        if _SENSITIVE and any(text in record.getMessage() for text in _SENSITIVE):
            return False  # on any thread (the SDK detects resources on a thread pool)
        if not _quiet.get():
            return True
        _said_once(record.getMessage())
        return False


_FILTER = _QuietFilter()
_SENSITIVE = sensitive_fragments(os.environ)


def _said_once(message: str) -> None:
    global _said_export_error
    if not _said_export_error:
        _said_export_error = True
        log.info(f"telemetry export failed ({message}); retrying in the background")


def _install_quiet_filter() -> None:
    for name, logger in list(logging.root.manager.loggerDict.items()):
        if (
            name.startswith("opentelemetry")
            and isinstance(logger, logging.Logger)
            and _FILTER not in logger.filters
        ):
            logger.addFilter(_FILTER)


class QuietSpanExporter(SpanExporter):
    """Delegates to an exporter; its failures are contained and its log records silenced."""

    def __init__(self, inner: SpanExporter) -> None:
        self.inner = inner

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        token = _quiet.set(True)
        try:
            return self.inner.export(spans)
        except Exception as exc:
            _said_once(repr(exc))
            return SpanExportResult.FAILURE
        finally:
            _quiet.reset(token)

    def shutdown(self) -> None:
        token = _quiet.set(True)
        try:
            self.inner.shutdown()
        except Exception as exc:
            _said_once(repr(exc))
        finally:
            _quiet.reset(token)

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        token = _quiet.set(True)
        try:
            return self.inner.force_flush(timeout_millis)
        except Exception as exc:
            _said_once(repr(exc))
            return False
        finally:
            _quiet.reset(token)


class QuietMetricExporter(MetricExporter):
    """Delegates to a metric exporter; failures contained, log records silenced."""

    def __init__(self, inner: MetricExporter) -> None:
        super().__init__(
            preferred_temporality=inner._preferred_temporality,
            preferred_aggregation=inner._preferred_aggregation,
        )
        self.inner = inner

    def export(
        self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any
    ) -> MetricExportResult:
        token = _quiet.set(True)
        try:
            return self.inner.export(metrics_data, timeout_millis=timeout_millis, **kwargs)
        except Exception as exc:
            _said_once(repr(exc))
            return MetricExportResult.FAILURE
        finally:
            _quiet.reset(token)

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        token = _quiet.set(True)
        try:
            return self.inner.force_flush(timeout_millis=timeout_millis)
        except Exception as exc:
            _said_once(repr(exc))
            return False
        finally:
            _quiet.reset(token)

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        token = _quiet.set(True)
        try:
            self.inner.shutdown(timeout_millis=timeout_millis, **kwargs)
        except Exception as exc:
            _said_once(repr(exc))
        finally:
            _quiet.reset(token)


def _suppress_own_counting(plan: Plan) -> None:
    """Clients built by the exporters (the HTTP exporter's requests.Session, the gRPC
    exporter's grpc.Channel, both in the catalog) are not counted: the constructor hooks see
    this thread as inside a construction already."""
    # a full import, even while another thread is importing it
    from leakagent.hooks import patcher

    patcher._depth.set(1)


def build_resource() -> Resource:
    """Service name and attributes from the standard variables, plus the process."""
    import platform

    attributes: dict[str, Any] = {
        "process.pid": os.getpid(),
        "process.executable.path": sys.executable or "",
        "process.executable.name": os.path.basename(sys.executable or ""),
        "process.runtime.name": sys.implementation.name,
        "process.runtime.version": platform.python_version(),
        "process.runtime.description": sys.version,
        "telemetry.distro.name": "leakagent",
        "telemetry.distro.version": __version__,
    }
    try:
        attributes["process.parent_pid"] = os.getppid()
    except OSError:
        pass
    # Resource.create merges OTEL_RESOURCE_ATTRIBUTES and OTEL_SERVICE_NAME over these; a
    # malformed pair is named by leakagent (values.problems), the SDK's record dropped.
    _install_quiet_filter()
    token = _silent.set(True)
    try:
        return Resource.create(attributes)
    finally:
        _silent.reset(token)


def _built_silently(cls: Callable[..., Any], **options: Any) -> Any:
    """An exporter built with the SDK's log records dropped (they may quote a header)."""
    _install_quiet_filter()  # the exporter's modules, just imported, have their loggers now
    token = _silent.set(True)
    try:
        return cls(**{k: v for k, v in options.items() if v is not None})
    finally:
        _silent.reset(token)


def _span_exporter(
    name: str, protocol: str, timeout: Optional[float], headers: Optional[dict[str, str]]
) -> SpanExporter:
    if name == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        return ConsoleSpanExporter(out=sys.stderr)  # never the program's stdout
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
            OTLPSpanExporter as GrpcSpanExporter,
        )

        return _built_silently(GrpcSpanExporter, timeout=timeout, headers=headers)  # type: ignore[no-any-return]
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
        OTLPSpanExporter as HttpSpanExporter,
    )

    return _built_silently(HttpSpanExporter, timeout=timeout, headers=headers)  # type: ignore[no-any-return]


def _metric_exporter(
    name: str, protocol: str, timeout: Optional[float], headers: Optional[dict[str, str]]
) -> MetricExporter:
    if name == "console":
        from opentelemetry.sdk.metrics.export import ConsoleMetricExporter

        return ConsoleMetricExporter(out=sys.stderr)
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import (
            OTLPMetricExporter as GrpcMetricExporter,
        )

        return _built_silently(GrpcMetricExporter, timeout=timeout, headers=headers)  # type: ignore[no-any-return]
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import (
        OTLPMetricExporter as HttpMetricExporter,
    )

    return _built_silently(HttpMetricExporter, timeout=timeout, headers=headers)  # type: ignore[no-any-return]


def _prometheus_reader(plan: Plan) -> Optional[MetricReader]:
    try:
        from opentelemetry.exporter.prometheus import PrometheusMetricReader
        from prometheus_client import start_http_server
    except ImportError as exc:
        sys.stderr.write(
            "leakagent: OTEL_METRICS_EXPORTER=prometheus needs the Prometheus exporter: "
            f"pip install 'leakagent[prometheus]' ({exc})\n"
        )
        return None
    address = f"{plan.prometheus_host}:{plan.prometheus_port}"
    try:
        start_http_server(port=plan.prometheus_port, addr=plan.prometheus_host)
    except OSError as exc:  # port taken (another worker), host unresolvable: the rest goes on
        if isinstance(exc, socket.gaierror):
            why = (
                f"OTEL_EXPORTER_PROMETHEUS_HOST={plan.prometheus_host!r} cannot be resolved "
                f"({exc.strerror or exc})"
            )
        elif exc.errno == errno.EADDRINUSE:
            why = (
                f"port {plan.prometheus_port} (OTEL_EXPORTER_PROMETHEUS_PORT) is taken, "
                "maybe by another worker of this program: give each worker its own port "
                "(see 'Several workers' in docs/opentelemetry.md)"
            )
        else:
            why = f"{address} cannot be served ({exc})"
        say_once_per_process_tree(
            f"prometheus-{plan.prometheus_port}",
            f"no /metrics here: {why}; OTLP export and the report go on",
        )
        return None
    log.info(f"serving /metrics on {address}")
    return PrometheusMetricReader()


def say_once_per_process_tree(key: str, message: str) -> None:
    """A warning the first process of the tree (the program and its workers) says; the
    others say it at INFO level. The mark is an empty file in the temporary directory."""
    import tempfile

    root = os.environ.get("LEAKAGENT_ROOT_PID", "") or str(os.getpid())
    mark = os.path.join(tempfile.gettempdir(), f"leakagent-{root}-{key}.said")
    flags = os.O_CREAT | os.O_EXCL | os.O_WRONLY | getattr(os, "O_NOFOLLOW", 0)
    try:
        os.close(os.open(mark, flags, 0o600))
    except FileExistsError:
        log.info(message)
        return
    except OSError:
        pass  # no temporary directory: say it here
    log.warning(message)


class Telemetry(Instruments, Spans):
    """The export layer of one process."""

    def __init__(self, tracker: Tracker, config: Config, plan: Plan) -> None:
        self.plan = plan
        self.config = config
        self.tracker = tracker
        self.series = SeriesMap(self.config.otel_max_series)
        self.suspect_series = SeriesMap(self.config.otel_max_series)
        self.limiter = SpanLimiter(self.config.otel_span_rate)
        self.tracer_provider: Optional[TracerProvider] = None
        self.meter_provider: Optional[MeterProvider] = None
        self._private_tracer: Optional[Tracer] = None
        self._global_tracer: Optional[Tracer] = None
        self._global_meter_seen = False
        self._snapshot: tuple[float, list[dict[str, Any]]] = (0.0, [])
        self._snapshot_lock = threading.Lock()
        # The limit the memory warning uses: LEAKAGENT_MEMORY_LIMIT, else the cgroup's.
        self._memory_limit = resolve_limit(self.config)[0]
        self._time_offset_ns = time.time_ns() - time.perf_counter_ns()
        self._finished = False
        self._worker_ready = False
        self._flush_timeout = 0.0
        self._flush_request = _thread.allocate_lock()
        self._flush_done = _thread.allocate_lock()

    # -- set-up ---------------------------------------------------------------------------

    def start(self, stop: Callable[[], bool] = lambda: False) -> None:
        """Build the private providers and register the instruments (set-up thread).

        ``stop()`` is asked before each exporter is built (each imports its protocol's
        modules and opens its channel): true once the program's exit wants no export."""
        _suppress_own_counting(self.plan)
        resource = build_resource()
        if self.plan.traces:
            provider = TracerProvider(resource=resource, shutdown_on_exit=False)
            for name in self.plan.traces:
                if stop():
                    return
                spans = QuietSpanExporter(
                    _span_exporter(
                        name,
                        self.plan.traces_protocol,
                        self.plan.traces_timeout,
                        self.plan.traces_headers,
                    )
                )
                provider.add_span_processor(BatchSpanProcessor(spans))
            self.tracer_provider = provider
            self._private_tracer = provider.get_tracer(SCOPE, __version__)
        if self.plan.metrics:
            readers: list[MetricReader] = []
            for name in self.plan.metrics:
                if name == "prometheus":
                    reader = _prometheus_reader(self.plan)
                    if reader is not None:
                        readers.append(reader)
                else:
                    if stop():
                        return
                    exporter = QuietMetricExporter(
                        _metric_exporter(
                            name,
                            self.plan.metrics_protocol,
                            self.plan.metrics_timeout,
                            self.plan.metrics_headers,
                        )
                    )
                    readers.append(
                        PeriodicExportingMetricReader(
                            exporter, export_interval_millis=self.plan.export_interval_ms
                        )
                    )
            self.meter_provider = MeterProvider(
                metric_readers=readers, resource=resource, shutdown_on_exit=False
            )
            private = self.meter_provider.get_meter(SCOPE, __version__)
            self._register(private, lambda: not self._global_meter_active())
            # Through the API's proxy: comes alive when (or if) a global provider is set.
            shared = otel_metrics.get_meter_provider().get_meter(SCOPE, __version__)
            self._register(shared, self._global_meter_active)
        _install_quiet_filter()

    # -- the end --------------------------------------------------------------------------

    def finish(self, timeout: float) -> None:
        """Flush every provider, never longer than ``timeout``.

        The flush runs on the flush worker, a daemon thread started with the layer (Python
        3.12+ starts no thread once the interpreter shuts down): if the collector is slow,
        the process still exits on time."""
        if self._finished:
            return
        self._finished = True
        self._flush_timeout = timeout
        if not self._worker_ready:
            self.start_flush_worker()
            if not self._worker_ready:
                return
        self._flush_request.release()
        if not self._flush_done.acquire(timeout=timeout):
            log.info(f"telemetry flush did not finish within {timeout:g} s; exiting anyway")

    def start_flush_worker(self) -> None:
        """Start the daemon thread that waits for the exit flush (at set-up, after a fork)."""
        self._flush_request = _thread.allocate_lock()
        self._flush_request.acquire()
        self._flush_done = _thread.allocate_lock()
        self._flush_done.acquire()
        try:
            _thread.start_new_thread(self._flush_worker, ())
        except RuntimeError as exc:  # 3.12+: no new thread once the interpreter finalizes
            log.info(f"telemetry not flushed: {exc}")
            return
        self._worker_ready = True

    def _flush_worker(self) -> None:
        self._flush_request.acquire()
        try:
            self._flush(self._flush_timeout)
        finally:
            self._flush_done.release()

    def _flush(self, timeout: float) -> None:
        token = _quiet.set(True)
        try:
            deadline = time.monotonic() + timeout

            def left() -> int:
                return max(1, int((deadline - time.monotonic()) * 1000))

            if self._global_tracer is not None:
                flush = getattr(otel_trace.get_tracer_provider(), "force_flush", None)
                if flush is not None:
                    flush(left())
            if self._global_meter_seen:
                flush = getattr(otel_metrics.get_meter_provider(), "force_flush", None)
                if flush is not None:
                    flush(left())
            if self.tracer_provider is not None:
                self.tracer_provider.force_flush(left())
            if self.meter_provider is not None:
                self.meter_provider.force_flush(left())
        except Exception as exc:
            _said_once(repr(exc))
        finally:
            _quiet.reset(token)

    def after_fork_in_child(self) -> None:
        """The child exports its own data: fresh limiter and snapshot, its own pid."""
        self.limiter.reset()
        self._snapshot_lock = threading.Lock()
        self._snapshot = (0.0, [])
        self._finished = False
        self._worker_ready = False  # the parent's flush worker is not in the child
        self.start_flush_worker()
        self._time_offset_ns = time.time_ns() - time.perf_counter_ns()
        pid = Resource({"process.pid": os.getpid(), "process.parent_pid": os.getppid()})
        for owned in (self.tracer_provider, self.meter_provider):
            update = getattr(owned, "_update_resource", None)
            if update is not None:
                update(pid)
