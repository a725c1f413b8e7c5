"""Memory per call site: an estimate of the bytes one instance holds, and its live instances.

Method (measured in docs/memory.md): for a site with live instances, up to
:data:`SAMPLE` of them are taken (:meth:`Tracker.sample_live`) and each is walked with
``gc.get_referents`` breadth-first, summing ``sys.getsizeof`` of what it reaches. The walk
stops at what is not the instance's own: modules, classes, functions and code, and whatever
two sampled instances both reach, or a live instance of another site reaches (a shared
session, loader or cache); it visits at most :data:`BUDGET` objects per instance.
``bytes_per_instance`` is the median of the samples and ``live_bytes`` that times the live
count. A site that churns keeps few instances alive, so
it is never blamed for memory others retain.

Nothing here runs on the hot path: it runs when a report is built or a warning written, for
at most :data:`MAX_SITES` sites, and an estimate is reused for :data:`REFRESH` seconds.
"""

from __future__ import annotations

import gc
import os
import sys
import time
from _collections import deque  # type: ignore[import-not-found]

from leakagent.core import guard

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Any, Optional

    from leakagent.core.tracker import Tracker

    SiteKey = tuple[str, str, int, str]

PART = "sizing"
SAMPLE = 3
"""Live instances measured per site."""
BUDGET = 5_000
"""Most objects visited from one instance."""
REFERENCES = 3
"""Live instances of other sites walked to find what is shared."""
REFERENCE_BUDGET = 10_000
"""Most objects visited from one reference."""
MAX_SITES = 10
"""Most sites measured in one call (suspects first, then by live instances)."""
REFRESH = 30.0
"""Seconds an estimate is reused before the site is measured again."""
MAX_CACHED = 256



def _stop_types() -> tuple[type, ...]:
    """What an instance refers to but does not own: modules, classes, builtins, code, frames
    (functions are walked: a closure or bound method may hold the instance's own state; the
    globals they reach are module dicts, where the walk stops)."""
    return (type, type(sys), type(len), type(_stop_types.__code__), type(sys._getframe()))


_STOP_TYPES = _stop_types()
_STDLIB = os.path.dirname(os.__file__) + os.sep


def _reach(root: object, stop: set[int], budget: int) -> dict[int, int]:
    """id -> size of the objects reachable from ``root`` (bounded, stopping at ``stop``)."""
    seen: dict[int, int] = {}
    queue = deque([root])  # breadth-first: what the instance holds directly comes first
    while queue and len(seen) < budget:
        obj = queue.popleft()
        ident = id(obj)
        if ident in seen or ident in stop or isinstance(obj, _STOP_TYPES):
            continue
        try:
            seen[ident] = sys.getsizeof(obj)
        except Exception:  # a __sizeof__ of the program's that fails
            seen[ident] = 0
        queue.extend(gc.get_referents(obj))
    return seen


def _module_dicts() -> set[int]:
    """ids of every loaded module's globals: shared by everything, owned by nothing here."""
    out = set()
    for module in list(sys.modules.values()):
        namespace = getattr(module, "__dict__", None)
        if namespace is not None:
            out.add(id(namespace))
    return out


def measure(instances: list[object], references: Sequence[object] = ()) -> Optional[int]:
    """Bytes one of ``instances`` holds of its own (median over them); None if none given.

    ``references`` are live instances of other sites: what they reach without going through
    ``instances`` is shared, not owned (this tells a lone instance's shared state apart)."""
    if not instances:
        return None
    stop = {id(obj) for obj in instances}
    stop.update(_module_dicts())
    shared: set[int] = set()
    for reference in references:
        if id(reference) not in stop:
            shared.update(_reach(reference, stop, REFERENCE_BUDGET))
    reached = []
    for obj in instances:
        others = stop - {id(obj)}
        reached.append(_reach(obj, others, BUDGET))
    seen_by: dict[int, int] = {}
    for found in reached:
        for ident in found:
            seen_by[ident] = seen_by.get(ident, 0) + 1
    sizes = sorted(
        sum(
            size
            for ident, size in found.items()
            if seen_by[ident] == 1 and ident not in shared
        )
        for found in reached
    )
    return sizes[len(sizes) // 2]


class Sizer:
    """Estimates per site of one tracker, cached for :data:`REFRESH` seconds."""

    def __init__(self, tracker: Tracker) -> None:
        self.tracker = tracker
        self._cache: dict[SiteKey, tuple[float, Optional[int], int]] = {}
        """key -> (when, estimate, how many instances it was measured on)."""

    def references(
        self, counts: dict[SiteKey, tuple[int, int, bool, Optional[str]]]
    ) -> list[tuple[SiteKey, object]]:
        """One live instance of each of the (at most :data:`REFERENCES`) sites keeping most."""
        # The standard library's own locals (asyncio's, made at import) share nothing with a
        # program's clients: the sites of the program and its libraries come first.
        ranked = sorted(
            (k for k, c in counts.items() if c[1] > 0),
            key=lambda k: (k[1].startswith(_STDLIB) and "-packages" not in k[1], -counts[k][1]),
        )
        out: list[tuple[SiteKey, object]] = []
        for key in ranked[: REFERENCES + 1]:
            out.extend((key, obj) for obj in self.tracker.sample_live(key, 1))
        return out

    def per_instance(
        self,
        key: SiteKey,
        now: Optional[float] = None,
        references: Optional[list[tuple[SiteKey, object]]] = None,
    ) -> Optional[int]:
        """The estimate for one site (measured now unless a recent one is cached)."""
        now = time.time() if now is None else now
        cached = self._cache.get(key)
        if cached is not None and now - cached[0] < REFRESH:
            return cached[1]
        if references is None:
            references = self.references(self.tracker.live_counts())
        others = [obj for other, obj in references if other != key][:REFERENCES]
        sampled = self.tracker.sample_live(key, SAMPLE)
        count = len(sampled)
        estimate = measure(sampled, others)
        del sampled, others
        if cached is not None and cached[1] is not None and count < min(cached[2], 2):
            # None alive now, or one alone (whose shared state cannot be told apart): what
            # several instances measured before is the better estimate.
            estimate, count = cached[1], cached[2]
        if len(self._cache) >= MAX_CACHED and key not in self._cache:
            del self._cache[min(self._cache, key=lambda k: self._cache[k][0])]
        self._cache[key] = (now, estimate, count)
        return estimate

    def known(self, key: SiteKey) -> Optional[int]:
        """The last estimate of a site, never measured here (None when there is none yet)."""
        cached = self._cache.get(key)
        return None if cached is None else cached[1]

    def site_bytes(self) -> dict[SiteKey, tuple[Optional[int], int]]:
        """key -> (bytes per instance, live bytes) for the sites that matter most."""
        counts = self.tracker.live_counts()
        ranked = sorted(
            (item for item in counts.items() if item[1][1] > 0 or item[1][2]),
            key=lambda item: (not item[1][2], -item[1][1]),
        )
        now = time.time()
        references = self.references(counts)
        out: dict[SiteKey, tuple[Optional[int], int]] = {}
        for key, (_created, live, _suspect, _verdict) in ranked[:MAX_SITES]:
            each = self.per_instance(key, now, references)
            out[key] = (each, (each or 0) * live)
        del references
        return out


_SIZERS: dict[int, Sizer] = {}


def sizer(tracker: Tracker) -> Sizer:
    """The cached :class:`Sizer` of ``tracker``."""
    found = _SIZERS.get(id(tracker))
    if found is None or found.tracker is not tracker:
        if len(_SIZERS) >= 8:
            _SIZERS.clear()
        found = _SIZERS[id(tracker)] = Sizer(tracker)
    return found


def site_bytes(tracker: Tracker) -> dict[SiteKey, tuple[Optional[int], int]]:
    """key -> (bytes per instance, live bytes); empty if sizing fails (contained)."""
    if guard.is_off(PART):
        return {}
    try:
        return sizer(tracker).site_bytes()
    except Exception as exc:
        guard.failed(PART, exc)
        return {}


def site_estimate(tracker: Tracker, key: SiteKey) -> Optional[int]:
    """Bytes one instance of site ``key`` holds; None if unknown (or sizing failed)."""
    if guard.is_off(PART):
        return None
    try:
        return sizer(tracker).per_instance(key)
    except Exception as exc:
        guard.failed(PART, exc)
        return None


def with_sizes(tracker: Tracker, site: dict[str, Any]) -> dict[str, Any]:
    """``site`` with ``bytes_per_instance`` and ``live_bytes`` added (a warning's copy).

    This runs on the program's thread that made the site a suspect. A churning site keeps
    nothing alive: its warning takes the estimate the report writer already made, if any,
    and measures nothing (a walk there, competing for the GIL with the program's other
    threads, delayed the warning by hundreds of creations: an 8-thread pool flagged at 46
    printed at 500). A retaining site is what fills the memory: it is measured now."""
    if guard.is_off(PART):
        return site
    try:
        key = (site["kind"], site["file"], site["line"], site["function"])
        found = sizer(tracker)
        retaining = site.get("verdict") == "retention"
        each = found.per_instance(key) if retaining else found.known(key)
    except Exception as exc:
        guard.failed(PART, exc)
        return site
    if each is None:
        return site
    site = dict(site)
    site["bytes_per_instance"] = each
    site["live_bytes"] = None if each is None else each * site.get("live", 0)
    return site
