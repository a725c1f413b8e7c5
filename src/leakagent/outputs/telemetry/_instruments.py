"""The metrics: the observable instruments, read from the tracker at collection time."""

from __future__ import annotations

import threading
import time

from opentelemetry import metrics as otel_metrics
from opentelemetry.metrics import CallbackOptions, Observation

from leakagent.core import guard
from leakagent.core.tracker import LOCAL_KIND
from leakagent.outputs.memory import read_rss
from leakagent.outputs.telemetry import PART, listed, show_internal
from leakagent.outputs.telemetry._spans import VERDICT
from leakagent.outputs.telemetry.limits import KIND, OVERFLOW, SeriesMap

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable
    from typing import Any, Callable, Optional

    from opentelemetry.metrics import Meter
    from opentelemetry.sdk.metrics import MeterProvider

    from leakagent.core.config import Config
    from leakagent.core.tracker import Tracker

# Metric names (documented in docs/opentelemetry.md).
CREATED = "leakagent.instances.created"
LIVE = "leakagent.instances.live"
MAX_PER_THREAD = "leakagent.instances.max_per_thread"
LOCALS_CREATED = "leakagent.thread_local.created"
SUSPECTS = "leakagent.suspects"
CALL_SITES = "leakagent.call_sites"
MEMORY_USAGE = "process.memory.usage"
MEMORY_LIMIT = "leakagent.memory.limit"

ORIGIN = "leakagent.origin"
"""Attribute of the one series per kind that sums the standard library's and the agent's own
sites (not suspects) unless LEAKAGENT_SHOW_INTERNAL=1 lists them."""


class Instruments:
    """Mixin of :class:`~leakagent.outputs.telemetry._setup.Telemetry`: the metric side."""

    tracker: Tracker
    config: Config
    series: SeriesMap
    suspect_series: SeriesMap
    meter_provider: Optional[MeterProvider]
    _global_meter_seen: bool
    _snapshot: tuple[float, list[dict[str, Any]]]
    _snapshot_lock: threading.Lock
    _memory_limit: Optional[int]

    def _global_meter_active(self) -> bool:
        if not self._global_meter_seen:
            from opentelemetry.sdk.metrics import MeterProvider as SdkMeterProvider

            provider = otel_metrics.get_meter_provider()
            self._global_meter_seen = isinstance(provider, SdkMeterProvider) and (
                provider is not self.meter_provider
            )
        return self._global_meter_seen

    def _register(self, meter: Meter, active: Callable[[], bool]) -> None:
        def gated(
            read: Callable[[], Iterable[Observation]],
        ) -> Callable[[CallbackOptions], Iterable[Observation]]:
            def callback(options: CallbackOptions) -> Iterable[Observation]:
                if guard.is_off(PART) or not active():
                    return []
                try:
                    return list(read())
                except Exception as exc:
                    guard.failed(PART, exc)
                    return []

            return callback

        meter.create_observable_counter(
            CREATED,
            [gated(self._observe_created)],
            unit="{instance}",
            description="Instances created, per kind and call site (threading.local included).",
        )
        meter.create_observable_up_down_counter(
            LIVE,
            [gated(self._observe_live)],
            unit="{instance}",
            description="Instances created and not yet freed, per kind and call site.",
        )
        meter.create_observable_gauge(
            MAX_PER_THREAD,
            [gated(self._observe_max_per_thread)],
            unit="{instance}",
            description="Most instances created by one thread at the call site "
            "(a site is a suspect above LEAKAGENT_THRESHOLD).",
        )
        meter.create_observable_counter(
            LOCALS_CREATED,
            [gated(self._observe_locals)],
            unit="{instance}",
            description="threading.local objects (and subclasses) created, per call site.",
        )
        meter.create_observable_up_down_counter(
            SUSPECTS,
            [gated(self._observe_suspects)],
            unit="{call_site}",
            description="Call sites currently suspected of creating a client on every call, "
            "per kind, call site and verdict (churn or retention).",
        )
        meter.create_observable_up_down_counter(
            CALL_SITES,
            [gated(self._observe_call_sites)],
            unit="{call_site}",
            description="Call sites tracked, per kind.",
        )
        meter.create_observable_up_down_counter(
            MEMORY_USAGE,
            [gated(self._observe_memory)],
            unit="By",
            description="The amount of physical memory in use (resident set size).",
        )
        if self._memory_limit is not None:
            meter.create_observable_up_down_counter(
                MEMORY_LIMIT,
                [gated(self._observe_memory_limit)],
                unit="By",
                description="Memory limit of the container (cgroup memory.max or "
                "memory.limit_in_bytes), when there is one.",
            )

    def sites(self) -> list[dict[str, Any]]:
        """The tracker's snapshot, shared by the callbacks of one collection."""
        with self._snapshot_lock:
            taken, sites = self._snapshot
            now = time.monotonic()
            if now - taken > 0.2:
                sites = self.tracker.snapshot()
                self._snapshot = (now, sites)
            return sites

    def _per_site(
        self, value: Callable[[dict[str, Any]], int], which: Callable[[dict[str, Any]], bool]
    ) -> Iterable[Observation]:
        overflow: Optional[int] = None
        internal: dict[str, int] = {}  # per kind: the sites not listed (quiet by default)
        show_internal = self._show_internal()
        for site in self.sites():
            if not which(site):
                continue
            if not listed(site, show_internal):
                internal[site["kind"]] = internal.get(site["kind"], 0) + value(site)
                continue
            attrs = self.series.attributes(site)
            if attrs is None:
                overflow = (overflow or 0) + value(site)
            else:
                yield Observation(value(site), attrs)
        if overflow is not None:
            yield Observation(overflow, {OVERFLOW: True})
        for kind, total in internal.items():  # the totals stay exact
            yield Observation(total, {KIND: kind, ORIGIN: "internal"})

    def _show_internal(self) -> bool:
        return show_internal(self.config)

    def _observe_created(self) -> Iterable[Observation]:
        return self._per_site(lambda s: s["created"], lambda s: True)

    def _observe_live(self) -> Iterable[Observation]:
        return self._per_site(lambda s: s["live"], lambda s: True)

    def _observe_max_per_thread(self) -> Iterable[Observation]:
        shown = self._show_internal()
        sites = [
            s for s in self.sites() if listed(s, shown) and self.series.attributes(s) is not None
        ]
        return [Observation(s["max_per_thread"], self.series.attributes(s)) for s in sites]

    def _observe_locals(self) -> Iterable[Observation]:
        return self._per_site(
            lambda s: s["created"], lambda s: LOCAL_KIND in (s["kind"], s["base"])
        )

    def _observe_suspects(self) -> Iterable[Observation]:
        overflow = 0
        for site in self.sites():
            if not site["suspect"]:
                continue
            attrs = self.suspect_series.attributes(site)
            if attrs is None:
                overflow += 1
            else:
                yield Observation(1, {**attrs, VERDICT: site["verdict"] or "churn"})
        if overflow:
            yield Observation(overflow, {OVERFLOW: True})

    def _observe_call_sites(self) -> Iterable[Observation]:
        kinds: dict[str, int] = {}
        for site in self.sites():
            kinds[site["kind"]] = kinds.get(site["kind"], 0) + 1
        return [Observation(count, {KIND: kind}) for kind, count in kinds.items()]

    def _observe_memory(self) -> Iterable[Observation]:
        rss = read_rss()
        return [] if rss is None else [Observation(rss)]

    def _observe_memory_limit(self) -> Iterable[Observation]:
        return [] if self._memory_limit is None else [Observation(self._memory_limit)]
