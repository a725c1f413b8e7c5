"""The spans: one per creation (rate-limited per call site) and one per suspect."""

from __future__ import annotations

import threading
import time

from opentelemetry import context as otel_context
from opentelemetry import trace as otel_trace
from opentelemetry.sdk.trace import TracerProvider

from leakagent._version import __version__
from leakagent.core import log
from leakagent.outputs.telemetry.limits import FILE, FUNCTION, KIND, LINE, SpanLimiter

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Optional

    from opentelemetry.trace import Tracer

    from leakagent.core.config import Config
    from leakagent.outputs.telemetry import Plan

SCOPE = "leakagent"

# Attribute keys.
BASE = "leakagent.base"
VERDICT = "leakagent.verdict"
SUSPECT = "leakagent.suspect"
THREAD_ID = "thread.id"
THREAD_NAME = "thread.name"


class Spans:
    """Mixin of :class:`~leakagent.outputs.telemetry._setup.Telemetry`: the span side."""

    plan: Plan
    config: Config
    limiter: SpanLimiter
    tracer_provider: Optional[TracerProvider]
    _private_tracer: Optional[Tracer]
    _global_tracer: Optional[Tracer]
    _time_offset_ns: int

    def _tracer(self) -> Optional[Tracer]:
        if not self.plan.traces:  # OTEL_TRACES_EXPORTER=none: no spans, whoever the provider
            return None
        if self._global_tracer is not None:
            return self._global_tracer
        provider = otel_trace.get_tracer_provider()
        if isinstance(provider, TracerProvider) and provider is not self.tracer_provider:
            self._global_tracer = provider.get_tracer(SCOPE, __version__)
            return self._global_tracer
        return self._private_tracer

    def on_creation(
        self, kind: str, site: tuple[str, int, str], start_ns: int, end_ns: int
    ) -> None:
        """A counted creation on the current thread: maybe a span (rate-limited per site)."""
        held = self.limiter.allow((kind, *site), time.monotonic())
        if held is None:
            return
        tracer = self._tracer()
        if tracer is None:
            return
        offset = self._time_offset_ns
        self._creation_span(
            tracer,
            kind,
            site,
            start_ns + offset,
            end_ns + offset,
            threading.get_ident(),
            threading.current_thread().name,
            None,
            held,
        )

    def _creation_span(
        self,
        tracer: Tracer,
        kind: str,
        site: tuple[str, int, str],
        start: int,
        end: int,
        ident: int,
        thread_name: str,
        parent: Any,
        held: int,
    ) -> None:
        attributes: dict[str, Any] = {
            KIND: kind,
            FILE: site[0],
            LINE: site[1],
            FUNCTION: site[2],
            THREAD_ID: ident,
            THREAD_NAME: thread_name,
        }
        if held:
            attributes["leakagent.spans.held_back"] = held
        span = tracer.start_span(kind, context=parent, attributes=attributes, start_time=start)
        span.end(end_time=end)

    def on_suspect(
        self, site: dict[str, Any], event: str, parent: Any = None, when: Optional[int] = None
    ) -> None:
        """A call site became a suspect (or turned to retention): one span that says so."""
        tracer = self._tracer()
        if tracer is None:
            return
        attributes: dict[str, Any] = {
            SUSPECT: True,
            "leakagent.event": event,
            KIND: site["kind"],
            VERDICT: site["verdict"] or "churn",
            FILE: site["file"],
            LINE: site["line"],
            FUNCTION: site["function"],
            "leakagent.created": site["created"],
            "leakagent.live": site["live"],
            "leakagent.threads": site["threads"],
            "leakagent.max_per_thread": site["max_per_thread"],
            "leakagent.threshold": self.config.threshold,
            THREAD_ID: threading.get_ident(),
            THREAD_NAME: threading.current_thread().name,
        }
        if site.get("base"):
            attributes[BASE] = site["base"]
        when = when or time.time_ns()
        span = tracer.start_span(
            f"leakagent suspect {site['kind']}",
            context=parent,
            attributes=attributes,
            start_time=when,
        )
        span.add_event(
            "leakagent.suspect",
            {"leakagent.verdict": attributes[VERDICT], "leakagent.event": event},
            timestamp=when,
        )
        span.end(end_time=when)

    def replay(
        self,
        creations: list[tuple[Any, ...]],
        suspects: list[tuple[dict[str, Any], str, Any, int]],
        dropped: int,
    ) -> None:
        """Spans for what happened before the layer was ready (set-up thread)."""
        if dropped:
            log.info(f"{dropped} creations made before export was ready are not spans")
        tracer = self._tracer()
        if tracer is None:
            return
        empty = otel_context.Context()
        for kind, site, start, end, ident, thread_name, parent in creations:
            held = self.limiter.allow((kind, *site), time.monotonic())
            if held is not None:
                context = parent if parent is not None else empty
                self._creation_span(
                    tracer, kind, site, start, end, ident, thread_name, context, held
                )
        for site, event, parent, when in suspects:
            self.on_suspect(site, event, parent if parent is not None else empty, when)
