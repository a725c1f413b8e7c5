"""Bounds of the export layer, free of OpenTelemetry: attribute series per call site, and the
per-call-site rate limit of creation spans."""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Optional

KIND = "leakagent.kind"
FILE = "code.file.path"
LINE = "code.line.number"
FUNCTION = "code.function.name"
OVERFLOW = "otel.metric.overflow"


class SeriesMap:
    """Bounded attribute sets per call site: the first ``cap`` sites get their own series.

    A site keeps its series for the life of the process (cumulative series never jump from
    one attribute set to another); later sites are summed into one overflow series marked
    ``otel.metric.overflow=true``.
    """

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self._series: dict[tuple[str, str, int, str], dict[str, Any]] = {}
        self.overflowed: set[tuple[str, str, int, str]] = set()

    def attributes(self, site: dict[str, Any]) -> Optional[dict[str, Any]]:
        """The site's attributes, or None when it belongs to the overflow series."""
        key = (site["kind"], site["file"], site["line"], site["function"])
        attrs = self._series.get(key)
        if attrs is not None:
            return attrs
        if key in self.overflowed:
            return None
        if len(self._series) >= self.cap:
            if len(self.overflowed) < 100_000:
                self.overflowed.add(key)
            return None
        attrs = {
            KIND: site["kind"],
            FILE: site["file"],
            LINE: site["line"],
            FUNCTION: site["function"],
        }
        self._series[key] = attrs
        return attrs


class SpanLimiter:
    """At most ``rate`` creation spans per call site per minute; counts what it held back."""

    WINDOW = 60.0

    def __init__(self, rate: int, max_sites: int = 10_000) -> None:
        self.rate = rate
        self.max_sites = max_sites
        self._state: dict[tuple[str, str, int, str], list[float]] = {}

    def allow(self, key: tuple[str, str, int, str], now: float) -> Optional[int]:
        """None when the span is held back; else how many were held back before it."""
        if self.rate <= 0:
            return None
        state = self._state.get(key)
        if state is None:
            if len(self._state) >= self.max_sites:
                return None
            state = [now, 0.0, 0.0]  # window start, spans in window, held back since last
            self._state[key] = state
        if now - state[0] >= self.WINDOW:
            state[0], state[1] = now, 0.0
        if state[1] >= self.rate:
            state[2] += 1
            return None
        state[1] += 1
        held, state[2] = int(state[2]), 0.0
        return held

    def reset(self) -> None:
        self._state = {}
