"""The report's bounded time series (memory, created/live per top call site) and its reader.

Points every :data:`FIRST_STEP` seconds at first, at most :data:`MAX_POINTS`; when full,
every other point is dropped and the step doubles, so the whole run stays covered at a
coarser grain. :func:`series_sites` reads the
series back out of a saved report (the text and HTML viewers draw from it).
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Optional

    from leakagent.core.tracker import Tracker

MAX_POINTS = 120
"""Most points in the report's time series."""
SITES_PER_POINT = 8
"""Most call sites recorded in one point (suspects first, then by live, then created)."""
FIRST_STEP = 0.1
"""Seconds between the first points: a 2-second run still gets ~20 points; a 5-hour one ends
with a step of ~200 s (the step doubles whenever :data:`MAX_POINTS` is reached)."""
MAX_SERIES_SITES = 50
"""Most distinct call sites named by the whole series."""

SiteKey = tuple[str, str, int, str]


def site_fields(key: SiteKey) -> dict[str, Any]:
    """The site-identifying fields of a report entry, from a tracker key."""
    return {"kind": key[0], "file": key[1], "line": key[2], "function": key[3]}


class TimeSeries:
    """The points of one process; the caller (the watcher) holds the lock around calls."""

    def __init__(self, step: float = FIRST_STEP) -> None:
        self.points: list[dict[str, Any]] = []
        self.step = step
        self.next_point = 0.0
        self._site_ids: dict[SiteKey, int] = {}

    def sample(self, tracker: Tracker, now: float, rss: Optional[int]) -> None:
        """Append one point (memory, totals, top sites by live instances)."""
        counts = tracker.live_counts()
        top = sorted(
            counts.items(), key=lambda item: (not item[1][2], -item[1][1], -item[1][0])
        )
        sites = []
        for key, (created, live, _suspect, _verdict) in top[:SITES_PER_POINT]:
            if not created:
                continue
            site_id = self._site_ids.get(key)
            if site_id is None:
                if len(self._site_ids) >= MAX_SERIES_SITES:
                    continue
                site_id = self._site_ids[key] = len(self._site_ids)
            sites.append([site_id, created, live])
        point = {
            "t": round(now - tracker.started, 3),
            "rss": rss,
            "created": sum(c[0] for c in counts.values()),
            "live": sum(c[1] for c in counts.values()),
            "sites": sites,
        }
        self.points.append(point)
        if len(self.points) > MAX_POINTS:
            # Keep the first and every other point: the whole run, at half the grain.
            self.points = self.points[::2]
            self.step *= 2
        self.next_point = now + self.step

    def section(self) -> dict[str, Any]:
        """The report's ``timeseries`` section (a copy)."""
        return {
            "max_points": MAX_POINTS,
            "step": self.step,
            "sites": [
                {"id": site_id, **site_fields(key)} for key, site_id in self._site_ids.items()
            ],
            "points": list(self.points),
        }


def series_sites(data: dict[str, Any]) -> list[tuple[dict[str, Any], list[int], list[int]]]:
    """(site, created per point, live per point) for each site of a report's time series."""
    series = data.get("timeseries") or {}
    points = series.get("points") or []
    out = []
    for site in series.get("sites") or []:
        created: list[int] = []
        live: list[int] = []
        for point in points:
            entry = next((s for s in point.get("sites", ()) if s[0] == site["id"]), None)
            created.append(entry[1] if entry else (created[-1] if created else 0))
            live.append(entry[2] if entry else 0)
        out.append((site, created, live))
    out.sort(key=lambda item: -max(item[2], default=0))
    return out
