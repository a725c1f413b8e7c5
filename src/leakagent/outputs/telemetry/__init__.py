"""OpenTelemetry export: metrics and spans, switched on by the standard ``OTEL_*`` variables.

This module is imported at start-up by the bootstrap, so it imports no OpenTelemetry and
nothing heavy: it reads the configuration (:func:`plan_from_env`) and, only when export is
configured, starts a background thread that imports the SDK and the exporters
(:mod:`leakagent.outputs.telemetry._setup`) off the program's main thread. Creations seen
before that thread is ready are kept in a small bounded buffer and become spans once it is.

With no configuration nothing is imported and nothing goes over the network.
"""

from __future__ import annotations

import _thread
import os
import sys
import time

from leakagent.core import guard, log
from leakagent.hooks import importhook

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any, Callable, Optional

    from leakagent.core.config import Config
    from leakagent.core.tracker import Tracker
    from leakagent.outputs.telemetry._setup import Telemetry

    SuspectListener = Callable[[dict[str, Any], str], None]

PART = "telemetry"
TRACES_EXPORTERS = ("otlp", "console", "none")
METRICS_EXPORTERS = ("otlp", "console", "prometheus", "none")
PROTOCOLS = ("grpc", "http/protobuf")
DEFAULT_PROTOCOL = "grpc"  # what opentelemetry-instrument uses, so both tools agree
PROMETHEUS_HOST = "127.0.0.1"  # loopback unless OTEL_EXPORTER_PROMETHEUS_HOST says otherwise
PROMETHEUS_PORT = 9464
EARLY_BUFFER = 256
"""Most creations remembered before the export layer is ready (then they are dropped)."""
SETUP_DELAY = 1.0
"""Seconds the SDK import waits after start, unless a client creation, a suspect or the exit
(when there is something to export) wakes it first: the first lines of a program that
makes no client do not compete with it."""


class Plan:
    """What to export, read from the standard OpenTelemetry variables."""

    __slots__ = (
        "export_interval_ms",
        "metrics",
        "metrics_headers",
        "metrics_protocol",
        "metrics_timeout",
        "problems",
        "prometheus_host",
        "prometheus_port",
        "traces",
        "traces_headers",
        "traces_protocol",
        "traces_timeout",
    )

    def __init__(self) -> None:
        self.traces: tuple[str, ...] = ()
        self.metrics: tuple[str, ...] = ()
        self.traces_protocol = DEFAULT_PROTOCOL
        self.metrics_protocol = DEFAULT_PROTOCOL
        self.prometheus_host = PROMETHEUS_HOST
        self.prometheus_port = PROMETHEUS_PORT
        self.export_interval_ms: Optional[float] = None  # None: the SDK's default (60 s)
        self.problems: list[str] = []
        # Seconds handed to the OTLP exporter when a timeout variable is malformed (else
        # None: the SDK reads the variables itself).
        self.traces_timeout: Optional[float] = None
        self.metrics_timeout: Optional[float] = None
        # The well-formed headers, handed to the OTLP exporter when the variable is malformed
        # (else None: the SDK reads it), so that the SDK never logs the value.
        self.traces_headers: Optional[dict[str, str]] = None
        self.metrics_headers: Optional[dict[str, str]] = None

    @property
    def enabled(self) -> bool:
        """True when any signal is exported."""
        return bool(self.traces or self.metrics)

    def __repr__(self) -> str:
        return (
            f"Plan(traces={self.traces}, metrics={self.metrics}, "
            f"protocols={self.traces_protocol}/{self.metrics_protocol})"
        )


def _exporters(
    env: Mapping[str, str], signal: str, allowed: tuple[str, ...], plan: Plan
) -> tuple[str, ...]:
    name = f"OTEL_{signal}_EXPORTER"
    raw = env.get(name, "").strip().lower()
    if not raw:
        endpoint = (
            env.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip()
            or env.get(f"OTEL_EXPORTER_OTLP_{signal}_ENDPOINT", "").strip()
        )
        return ("otlp",) if endpoint else ()
    chosen: list[str] = []
    for value in (v.strip() for v in raw.split(",")):
        if not value:
            continue
        if value not in allowed:
            plan.problems.append(
                f"{name}={value!r} is not one of {', '.join(allowed)}; leakagent ignores it"
            )
        elif value != "none" and value not in chosen:
            chosen.append(value)
    if "none" in raw.split(","):
        return ()
    return tuple(chosen)


def _protocol(env: Mapping[str, str], signal: str, plan: Plan) -> str:
    for name in (f"OTEL_EXPORTER_OTLP_{signal}_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"):
        value = env.get(name, "").strip().lower()
        if not value:
            continue
        if value in PROTOCOLS:
            return value
        problem = f"{name}={value!r} is not one of {', '.join(PROTOCOLS)}; using {DEFAULT_PROTOCOL}"
        if problem not in plan.problems:  # the shared variable serves both signals
            plan.problems.append(problem)
        return DEFAULT_PROTOCOL
    return DEFAULT_PROTOCOL


OTLP_TIMEOUT = 10.0
"""The SDK's default OTLP timeout in seconds, used when a timeout variable is malformed."""


def _problem_once(plan: Plan, problem: str) -> None:
    if problem not in plan.problems:  # the shared variables serve both signals
        plan.problems.append(problem)


def _timeout(env: Mapping[str, str], signal: str, plan: Plan) -> Optional[float]:
    """None when every OTLP timeout variable of ``signal`` is usable (the SDK reads them),
    else the seconds to hand to the exporter; a malformed one is one problem, named."""
    chosen: Optional[float] = None
    bad = False
    for name in (f"OTEL_EXPORTER_OTLP_{signal}_TIMEOUT", "OTEL_EXPORTER_OTLP_TIMEOUT"):
        raw = env.get(name, "").strip()
        if not raw:
            continue
        try:
            value = float(raw)
        except ValueError:
            value = -1.0
        if 0 < value < float("inf"):
            if chosen is None:
                chosen = value
            continue
        bad = True
        _problem_once(
            plan,
            f"{name} is not a positive number of seconds; leakagent uses "
            f"{OTLP_TIMEOUT:g} for its exporters",
        )
    if not bad:
        return None
    return chosen if chosen is not None else OTLP_TIMEOUT


_HOST_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_")


def _plainly_valid(endpoint: str) -> bool:
    """True for the common forms (``http[s]://host[:port][/path]``, ``host:port``) that
    ``urlsplit`` accepts, checked without importing ``urllib.parse`` (with ``re``, ``enum``
    and ``ipaddress`` it costs ~10 ms before the program's first line); False means "ask
    ``urlsplit``", never "invalid"."""
    scheme, sep, rest = endpoint.partition("://")
    if not sep:
        rest = endpoint
    elif scheme.lower() not in ("http", "https"):
        return False
    authority = rest.partition("/")[0]
    if any(c in rest for c in "?#@[]%\\ "):
        return False
    host, colon, port = authority.rpartition(":")
    if not colon:
        host, port = authority, ""
    elif not (port.isascii() and port.isdigit() and int(port) <= 65535):
        return False
    return bool(host) and host.strip(".-_") != "" and set(host) <= _HOST_CHARS


def endpoint_is_valid(endpoint: str) -> bool:
    """Whether an OTLP endpoint parses as a URL (or host:port) with a usable port."""
    if _plainly_valid(endpoint):
        return True
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(endpoint if "://" in endpoint else "http://" + endpoint)
        parts.port  # noqa: B018 (raises ValueError for a port out of range)
    except ValueError:
        return False
    return bool(parts.hostname)


def _endpoint_works(env: Mapping[str, str], signal: str, plan: Plan) -> bool:
    """False (and one problem naming the variable) when the endpoint the OTLP exporter of
    ``signal`` would use is malformed: that exporter is left out, the rest goes on."""
    for name in (f"OTEL_EXPORTER_OTLP_{signal}_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT"):
        raw = env.get(name, "").strip()
        if not raw:
            continue
        if endpoint_is_valid(raw):
            return True
        _problem_once(
            plan, f"{name} is not a valid URL; leakagent does not export {signal.lower()} over OTLP"
        )
        return False
    return True


def plan_from_env(environ: Optional[Mapping[str, str]] = None) -> Plan:
    """Read the export plan; malformed values become one problem each (logged once)."""
    env = os.environ if environ is None else environ
    plan = Plan()
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return plan
    plan.traces = _exporters(env, "TRACES", TRACES_EXPORTERS, plan)
    plan.metrics = _exporters(env, "METRICS", METRICS_EXPORTERS, plan)
    plan.traces_protocol = _protocol(env, "TRACES", plan)
    plan.metrics_protocol = _protocol(env, "METRICS", plan)
    if "otlp" in plan.traces:
        plan.traces_timeout = _timeout(env, "TRACES", plan)
        if not _endpoint_works(env, "TRACES", plan):
            plan.traces = tuple(name for name in plan.traces if name != "otlp")
    if "otlp" in plan.metrics:
        plan.metrics_timeout = _timeout(env, "METRICS", plan)
        if not _endpoint_works(env, "METRICS", plan):
            plan.metrics = tuple(name for name in plan.metrics if name != "otlp")
    if plan.enabled:
        from leakagent.outputs.telemetry import values

        plan.problems.extend(values.problems(env))
        plan.traces_headers = values.headers_for(env, "TRACES")
        plan.metrics_headers = values.headers_for(env, "METRICS")
    host = env.get("OTEL_EXPORTER_PROMETHEUS_HOST", "").strip()
    if host:
        plan.prometheus_host = host
    interval = env.get("OTEL_METRIC_EXPORT_INTERVAL", "").strip()
    if interval:
        try:
            millis = float(interval)
        except ValueError:
            millis = 0.0
        if millis > 0 and millis == millis:  # not NaN
            plan.export_interval_ms = millis
        else:
            plan.problems.append(
                f"OTEL_METRIC_EXPORT_INTERVAL={interval!r} is not a positive number of "
                "milliseconds; using the default 60000"
            )
            plan.export_interval_ms = 60000.0
    port = env.get("OTEL_EXPORTER_PROMETHEUS_PORT", "").strip()
    if port:
        if port.isdigit() and 0 <= int(port) <= 65535:
            plan.prometheus_port = int(port)
        else:
            plan.problems.append(
                f"OTEL_EXPORTER_PROMETHEUS_PORT={port!r} is not a port number; "
                f"using {PROMETHEUS_PORT}"
            )
    return plan


class Early:
    """Creations and suspects seen before the export layer is ready; bounded."""

    def __init__(self) -> None:
        self.lock = _thread.allocate_lock()
        self.creations: list[tuple[Any, ...]] = []
        self.suspects: list[tuple[dict[str, Any], str, Any, int]] = []
        self.dropped = 0
        self.ready: Optional[Telemetry] = None
        self.setting_up = _thread.allocate_lock()  # held while the set-up thread lives
        self.wake = _thread.allocate_lock()  # held until the set-up should start at once
        self.importing = False  # the set-up thread is past its delay, importing the SDK
        self.finished = False  # the exit flush ran, or was skipped
        self.unwanted = False  # the exit found nothing to export: the set-up need not run

    def start_thread(self, host: Host, plan: Plan) -> None:
        """The set-up thread: it sleeps up to :data:`SETUP_DELAY`, then imports the SDK."""
        self.importing = False
        self.finished = False
        self.unwanted = False
        self.setting_up.acquire()
        if not self.wake.locked():
            self.wake.acquire()
        _thread.start_new_thread(_set_up, (host, plan))

    def wake_up(self) -> None:
        """Start the set-up now (a suspect, or the exit with something to export)."""
        if self.wake.locked():
            try:
                self.wake.release()
            except RuntimeError:  # released by another thread just now
                pass


class Host:
    """What the export layer is given by the composition root (it imports nothing above)."""

    __slots__ = ("config", "tracker")

    def __init__(self, tracker: Tracker, config: Config) -> None:
        self.tracker = tracker
        self.config = config


_early = Early()
_plan: Optional[Plan] = None
_host: Optional[Host] = None


def _current_context() -> Any:
    """The program's current OpenTelemetry context, if the program imported the API."""
    context = sys.modules.get("opentelemetry.context")
    if context is None or getattr(context.__spec__, "_initializing", False):
        return None  # not imported, or being imported right now (by the set-up thread)
    get_current = getattr(context, "get_current", None)
    return None if get_current is None else get_current()


def _on_creation(kind: str, site: tuple[str, int, str], start_ns: int, end_ns: int) -> None:
    """``patcher.listeners`` entry: runs on the creating thread after each counted creation."""
    if guard.is_off(PART):
        return
    try:
        ready = _early.ready
        if ready is not None:
            ready.on_creation(kind, site, start_ns, end_ns)
            return
        _early.wake_up()  # a client was made: set up export now, not after the delay
        wall_end = time.time_ns()
        start = wall_end - (end_ns - start_ns)
        ident = _thread.get_ident()
        item = (kind, site, start, wall_end, ident, _thread_name(), _current_context())
        with _early.lock:
            ready = _early.ready
            if ready is None:
                if len(_early.creations) < EARLY_BUFFER:
                    _early.creations.append(item)
                else:
                    _early.dropped += 1
                return
        ready.on_creation(kind, site, start_ns, end_ns)
    except Exception as exc:
        guard.failed(PART, exc)


def _on_suspect(site: dict[str, Any], event: str) -> None:
    """Suspect listener of the agent: a suspect becomes a span (searchable)."""
    if guard.is_off(PART):
        return
    try:
        ready = _early.ready
        if ready is None:
            with _early.lock:
                ready = _early.ready
                if ready is None and len(_early.suspects) < EARLY_BUFFER:
                    _early.suspects.append((site, event, _current_context(), time.time_ns()))
            if ready is None:
                _early.wake_up()  # a finding: export it soon, not after the delay
                return
        ready.on_suspect(site, event)
    except Exception as exc:
        guard.failed(PART, exc)


def _thread_name() -> str:
    threading = sys.modules.get("threading")
    if threading is None:
        return "MainThread"
    return str(threading.current_thread().name)


def _listen_to_patcher(module: Any) -> None:
    if _on_creation not in module.listeners:
        module.listeners.append(_on_creation)


def start(
    tracker: Tracker,
    config: Config,
    add_suspect_listener: Callable[[SuspectListener], None],
    add_finish_hook: Callable[[Callable[[], None]], None],
) -> Optional[Plan]:
    """Start export when the ``OTEL_*`` variables ask for it; returns the plan (or None).

    The composition root hands over the tracker and the configuration, and two ways in: a
    suspect listener (a suspect becomes a span) and a finish hook (the flush at exit, SIGTERM).
    """
    global _plan, _host
    plan = plan_from_env()
    for problem in plan.problems:
        log.warning(problem)
    if not plan.enabled:
        return None
    host = Host(tracker, config)
    _plan, _host = plan, host
    add_suspect_listener(_on_suspect)
    # patcher imports wrapt: listen once it is imported (when a client library is), not now.
    importhook.when_imported("leakagent.hooks.patcher", _listen_to_patcher)
    add_finish_hook(_finish)
    _hook_exit_and_fork()
    if hasattr(os, "register_at_fork"):
        os.register_at_fork(after_in_child=_after_fork_in_child)
    _early.start_thread(host, plan)
    return plan


def _hook_exit_and_fork() -> None:
    """Our threading exit hook (the flush) and fork handler must run before those of
    concurrent.futures (the SDK's resource detection and grpc use its thread pools, which stop
    at exit): registered after them, they run first (reverse order). So concurrent.futures is
    imported here, on the main thread at start (~6 ms on an idle machine, only with export on):
    imported later by the set-up thread, a program ending within milliseconds of its finding
    could not be exported at all."""
    import concurrent.futures.thread  # noqa: F401
    import threading

    threading._register_atexit(_finish)  # type: ignore[attr-defined]
    if hasattr(os, "register_at_fork"):
        os.register_at_fork(before=_before_fork)


def _set_up(host: Host, plan: Plan) -> None:
    """Background thread: import the SDK, build providers and exporters, flush the buffer."""
    try:
        if _early.wake.acquire(timeout=SETUP_DELAY):
            _early.wake.release()
        if _early.unwanted:  # the program ended first, with nothing to export
            return
        _early.importing = True
        guard.fault_point(PART)
        from leakagent.outputs.telemetry._setup import Telemetry

        if _early.unwanted:  # the exit came during the import, with nothing to flush
            return
        telemetry = Telemetry(host.tracker, host.config, plan)
        telemetry.start(stop=lambda: _early.unwanted)
        if _early.unwanted:
            return
        telemetry.start_flush_worker()
        with _early.lock:
            creations, _early.creations = _early.creations, []
            suspects, _early.suspects = _early.suspects, []
            dropped, _early.dropped = _early.dropped, 0
            _early.ready = telemetry
        telemetry.replay(creations, suspects, dropped)
    except Exception as exc:
        if sys.is_finalizing():
            log.info(f"telemetry not started: the program ended first ({exc!r})")
            return
        if isinstance(exc, ImportError):  # a broken or partial OpenTelemetry install
            log.warning_once(
                "otel-import",
                f"telemetry export is off: OpenTelemetry cannot be imported ({exc}); "
                "the report still works (pip install 'leakagent' brings opentelemetry-sdk "
                "and opentelemetry-exporter-otlp)",
            )
            return
        if _exit_deadline is not None or _early.finished:
            # The program ended before export was ready: nothing to report, not a bug.
            log.info(f"telemetry not started: the program ended first ({exc!r})")
            return
        try:
            guard.failed(PART, exc)
        except Exception:  # strict mode re-raises; logged already, nothing above to catch it
            pass
    finally:
        _early.setting_up.release()


_exit_deadline: Optional[float] = None


def _time_left() -> float:
    """Seconds left of the exit bound, which starts when the program starts to exit."""
    global _exit_deadline
    if _exit_deadline is None:
        _exit_deadline = time.monotonic() + _exit_timeout()
    return max(0.0, _exit_deadline - time.monotonic())


def _worth_exporting(host: Host) -> bool:
    """Anything for the exporter at exit: a suspect, or a site the metrics would list."""
    if _early.suspects:
        return True
    totals = host.tracker.totals()
    if totals["suspects"]:
        return True
    if not totals["created"]:
        return False
    shown = show_internal(host.config)
    return any(listed(site, shown) for site in host.tracker.snapshot())


def show_internal(config: Config) -> bool:
    """``LEAKAGENT_SHOW_INTERNAL``: list the standard library's and the agent's own sites."""
    return bool(config.show_internal)


INTERNAL_ORIGINS = ("stdlib", "agent")


def listed(site: Mapping[str, Any], show_internal: bool) -> bool:
    """Whether a site is exported as its own series (quiet by default)."""
    return (
        show_internal
        or bool(site.get("suspect"))
        or site.get("origin", "user") not in INTERNAL_ORIGINS
    )


def _finish() -> None:
    """The exit flush (threading's exit hooks, then the reporter's finish hooks: atexit,
    SIGTERM), once, all within the exit bound.

    Nothing to export (no suspect, no listed site, or only Prometheus, which is scraped): no
    wait at all (the set-up thread, maybe still asleep, dies with the process). Every OTLP
    collector dead (refusing connections, or accepting and not answering a greeting): no
    flush either, said at INFO level. Else the set-up is woken if it still sleeps, waited
    for, and the providers flushed, all within the bound.
    """
    if _early.finished:
        return
    _early.finished = True
    host = _host
    if host is None:
        return
    plan = _plan
    if plan is None or not any(name != "prometheus" for name in (*plan.traces, *plan.metrics)):
        _early.unwanted = True
        return  # Prometheus is scraped: nothing to push at exit
    ready = _early.ready
    if not _worth_exporting(host):
        _early.unwanted = True
        log.info("telemetry: nothing to export at exit; not waiting for the exporter")
        _let_the_set_up_stop()
        return
    from leakagent.outputs.telemetry.probe import dead_collectors

    dead = dead_collectors(plan)
    if dead is not None:  # nothing to flush to
        _early.unwanted = True
        log.info(f"telemetry not flushed at exit: {dead}")
        _let_the_set_up_stop()
        return
    if ready is None:
        _early.wake_up()
        if _early.setting_up.acquire(timeout=_time_left()):
            _early.setting_up.release()
        ready = _early.ready
    if ready is not None:
        ready.finish(_time_left())


def _let_the_set_up_stop() -> None:
    """A set-up thread past its delay (importing the SDK and the exporters, building their
    channels) is waited for, within the exit bound; it stops at its next step, seeing the
    exit unwanted. The interpreter must not finalize while that thread is inside an
    extension's initialisation: a gRPC exit with a dead collector was seen to end with
    SIGSEGV (once, on a loaded machine) when the exit came in the middle of the set-up."""
    _wait_for_importing_set_up(_time_left())


def _wait_for_importing_set_up(timeout: float) -> None:
    """Wait (at most ``timeout``) for a set-up thread past its delay, not one still asleep."""
    if _early.ready is None and _early.importing and _early.setting_up.acquire(timeout=timeout):
        _early.setting_up.release()


def _exit_timeout() -> float:
    return _host.config.otel_exit_timeout if _host is not None else 0.4


FORK_WAIT = 5.0
"""Most seconds a fork waits for the set-up thread to finish its imports."""


def _before_fork() -> None:
    """Let the set-up finish before a fork: a child must not inherit half-imported modules
    (their import locks belong to a thread that does not exist in the child). A set-up
    thread still asleep is not waited for: the child starts its own."""
    _wait_for_importing_set_up(FORK_WAIT)


def _after_fork_in_child() -> None:
    global _exit_deadline
    _exit_deadline = None
    _early.finished = False  # the child exits, and flushes, on its own
    try:
        ready = _early.ready
        if ready is not None:
            ready.after_fork_in_child()
        else:  # forked before the set-up finished: the child sets itself up
            _early.lock = _thread.allocate_lock()
            _early.setting_up = _thread.allocate_lock()  # the set-up thread is not in the child
            _early.wake = _thread.allocate_lock()
            _early.creations.clear()
            _early.suspects.clear()
            if _host is not None and _plan is not None:
                _early.start_thread(_host, _plan)
    except Exception as exc:
        guard.failed(PART, exc)


def get() -> Optional[Telemetry]:
    """The running export layer, once ready (tests)."""
    return _early.ready
