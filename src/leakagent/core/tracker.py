"""The tracker core: counts per (kind, call site) and per thread, live instances, suspects.

Imports neither wrapt nor OpenTelemetry, and nothing heavy: it is on the start-up path.

* Counts are exact: every update happens under one plain lock. Not an RLock: eventlet's
  ``monkey_patch()`` turns every existing RLock into a green one, which hangs when a real
  thread (the report writer) takes it. The SIGTERM handler, which may interrupt the main
  thread inside the lock, checks it first (``lifecycle.Reporter``).
* Live instances are watched with weak references, never strong ones. A weakref callback
  runs on whatever thread frees the object (or runs the garbage collector), possibly while
  that thread holds the lock, and possibly inside a deallocator: the callback is the C
  method ``deque.append`` (no Python code runs, no lock is taken), and the deque is drained
  under the lock. A Python callback crashed CPython 3.11 inside ``_thread._local``'s
  deallocator, which walks the thread states while other threads may run (seen here with the
  seed's attempted fix, 6 runs in 8).
* Threads are told apart by a serial number, not by ``threading.get_ident()``, which the
  system reuses: a pool that starts a new thread per task must not look like one thread.
* Memory is bounded: at most ``max_sites`` sites (then one overflow site per kind), at most
  ``THREADS_PER_SITE`` per-thread counters per site (dead threads are dropped first), at most
  ``max_live_refs`` weak references (then ``live`` is a lower bound).
"""

from __future__ import annotations

import _thread
import itertools
import time
from _collections import deque  # type: ignore[import-not-found]
from _contextvars import ContextVar
from _weakref import ref

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, Optional

    Checkpoint = dict[tuple[str, str, int, str], tuple[int, int, dict[int, int]]]

THREADS_PER_SITE = 128
PRUNE_FROM = 8  # a site with this many thread counters drops those of ended threads
MAX_NAMES = 4096  # thread names kept for reports (names of ended threads go first)
OVERFLOW_FILE = "<other call sites>"
LOCAL_KIND = "threading.local"

Site = tuple[str, int, str]
"""A call site: (file path, line number, function qualname)."""

CONSTRUCTION_DEPTH: ContextVar[int] = ContextVar("leakagent_construction_depth", default=0)
"""How many counted client constructions are running in this context. Anything created inside
one (a nested client, a ``threading.local`` a client keeps per instance) belongs to it and is
not counted again."""

CHURN = "churn"
RETENTION = "retention"


class SiteStats:
    """Mutable counters of one (kind, call site). Read through :meth:`Tracker.snapshot`."""

    __slots__ = (
        "base",
        "created",
        "file",
        "first_seen",
        "freed",
        "function",
        "kind",
        "last_seen",
        "line",
        "live_peak",
        "max_per_thread",
        "max_thread",
        "per_thread",
        "pruned_at",
        "suspect",
        "suspect_since",
        "threads",
        "untracked",
        "verdict",
        "warned_retention",
    )

    def __init__(self, kind: str, site: Site, base: Optional[str], now: float) -> None:
        self.kind = kind
        self.base = base
        self.file, self.line, self.function = site
        self.created = 0
        self.freed = 0
        self.untracked = 0  # created but not watched (no weakref support, or cap reached)
        self.per_thread: dict[int, int] = {}
        self.pruned_at = 0  # the tracker's count of ended threads when last pruned
        self.threads = 0
        self.max_per_thread = 0
        self.max_thread = ""
        self.live_peak = 0
        self.first_seen = now
        self.last_seen = now
        self.suspect = False
        self.suspect_since = 0.0
        self.verdict: Optional[str] = None
        self.warned_retention = False

    @property
    def live(self) -> int:
        """Watched instances not yet freed (a lower bound when ``untracked`` > 0)."""
        return self.created - self.untracked - self.freed

    def as_dict(self, names: Optional[dict[int, str]] = None) -> dict[str, Any]:
        """A plain copy, safe to hand to other threads (``names``: thread serial -> name)."""
        names = names or {}
        top = sorted(self.per_thread.items(), key=lambda item: -item[1])[:10]
        return {
            "kind": self.kind,
            "base": self.base,
            "file": self.file,
            "line": self.line,
            "function": self.function,
            "created": self.created,
            "threads": self.threads,
            "max_per_thread": self.max_per_thread,
            "max_thread": self.max_thread,
            "live": self.live,
            "live_exact": self.untracked == 0,
            "live_peak": self.live_peak,
            "suspect": self.suspect,
            "verdict": self.verdict,
            "first_seen": self.first_seen,
            "last_seen": self.last_seen,
            "suspect_since": self.suspect_since or None,
            "top_threads": [
                {"thread": names.get(serial, "?"), "created": count} for serial, count in top
            ],
        }


class _Watch(ref):  # type: ignore[type-arg]
    """A weak reference that remembers which site its object was counted at."""

    __slots__ = ("site",)
    site: SiteStats


class _ThreadToken:
    """Lives in a thread's private slot: freed when the thread ends."""

    __slots__ = ("__weakref__", "name", "serial")

    def __init__(self, serial: int, name: str) -> None:
        self.serial = serial
        self.name = name


class _ThreadEnd(ref):  # type: ignore[type-arg]
    """A weak reference to a thread's token; its (C) callback queues it when the thread ends."""

    __slots__ = ("serial",)
    serial: int


def qualified_name(cls: type) -> str:
    """``module.QualName`` of a class: the kind label of a program's subclass."""
    return f"{cls.__module__}.{cls.__qualname__}"


def _thread_name() -> str:
    import sys

    threading = sys.modules.get("threading")
    if threading is None:
        return "MainThread"
    try:
        return str(threading.current_thread().name)
    except Exception:  # pragma: no cover
        return f"Thread-{_thread.get_ident()}"


class Tracker:
    """Counts creations per (kind, call site) and per thread, and finds suspects."""

    def __init__(
        self,
        threshold: int = 50,
        max_sites: int = 10_000,
        max_live_refs: int = 200_000,
        on_suspect: Optional[Callable[[dict[str, Any], str], None]] = None,
    ) -> None:
        self.threshold = threshold
        self.max_sites = max_sites
        self.max_live_refs = max_live_refs
        self.on_suspect = on_suspect
        """Called (outside the lock) with a site copy and the event: 'suspect' or 'retention'."""
        self.started = time.time()
        self._reset_state()

    def _reset_state(self) -> None:
        # A plain lock, not an RLock: eventlet's monkey_patch() turns every existing RLock
        # into a green one, which then hangs when a real thread (the report writer) uses it.
        self._lock = _thread.allocate_lock()
        self._sites: dict[tuple[str, str, int, str], SiteStats] = {}
        self._refs: dict[int, _Watch] = {}
        self._freed: deque[_Watch] = deque()  # dead references, queued by the callback
        self._on_free = self._freed.append  # the weakref callback: C code, no lock
        self._tls = _thread._local()
        self._serials = itertools.count(1)
        self._alive: dict[int, _ThreadEnd] = {}  # thread serial -> reference to its token
        self._ended: deque[_ThreadEnd] = deque()  # threads that ended since the last drain
        self._on_thread_end = self._ended.append
        self._ended_count = 0
        self._names: dict[int, str] = {}  # thread serial -> name (bounded: MAX_NAMES)
        self.overflowed = 0
        self.total_created = 0
        self.generation = 0  # bumped by every change, so writers can skip unchanged reports

    def reset_after_fork(self) -> None:
        """A forked child starts with its own, empty counts and a fresh lock."""
        self._reset_state()
        self.started = time.time()

    # -- the hot path ---------------------------------------------------------------------

    def _token(self) -> _ThreadToken:
        """This thread's token, made on its first creation."""
        try:
            return self._tls.token  # type: ignore[no-any-return]
        except AttributeError:
            serial = next(self._serials)
            token = _ThreadToken(serial, _thread_name())
            end = _ThreadEnd(token, self._on_thread_end)
            end.serial = serial
            self._alive[serial] = end
            self._names[serial] = token.name
            self._tls.token = token
            return token

    def record(self, kind: str, site: Site, obj: object, base: Optional[str] = None) -> None:
        """Count one new instance of ``kind`` created at ``site`` on the current thread."""
        try:
            token = self._tls.token
        except AttributeError:
            token = self._token()
        serial = token.serial
        now = time.time()
        event = None
        with self._lock:
            if self._freed or self._ended:
                self._drain()
            key = (kind, site[0], site[1], site[2])
            stats = self._sites.get(key)
            if stats is None:
                stats = self._new_site(kind, site, base, now)
            stats.created += 1
            stats.last_seen = now
            self.total_created += 1
            self.generation += 1
            per_thread = stats.per_thread
            count = per_thread.get(serial)
            if count is None:
                if len(per_thread) >= PRUNE_FROM and stats.pruned_at != self._ended_count:
                    self._forget_ended_threads(stats)
                if len(per_thread) >= THREADS_PER_SITE:
                    self._make_room(stats)
                stats.threads += 1
                count = 1
            else:
                count += 1
            per_thread[serial] = count
            if count > stats.max_per_thread:
                stats.max_per_thread = count
                stats.max_thread = token.name
            refs = self._refs
            if len(refs) < self.max_live_refs:
                try:
                    watch = _Watch(obj, self._on_free)
                except TypeError:  # the type does not support weak references
                    stats.untracked += 1
                else:
                    watch.site = stats
                    refs[id(watch)] = watch
            else:
                stats.untracked += 1
            live = stats.created - stats.untracked - stats.freed
            if live > stats.live_peak:
                stats.live_peak = live
            if not stats.suspect:
                if count > self.threshold:
                    stats.suspect = True
                    stats.suspect_since = now
                    stats.verdict = self._verdict(stats)
                    stats.warned_retention = stats.verdict == RETENTION
                    event = ("suspect", stats.as_dict(self._names))
            elif not stats.warned_retention and self._verdict(stats) == RETENTION:
                stats.verdict = RETENTION
                stats.warned_retention = True
                event = ("retention", stats.as_dict(self._names))
        if event is not None and self.on_suspect is not None:
            self.on_suspect(event[1], event[0])

    # -- under the lock -------------------------------------------------------------------

    def _drain(self) -> None:
        ended = self._ended
        while ended:
            serial = ended.popleft().serial
            self._alive.pop(serial, None)
            self._ended_count += 1
            self._names[serial] = self._names.pop(serial, "?")  # move to the newest end
        if len(self._names) > MAX_NAMES:
            self._forget_names()
        freed = self._freed
        refs = self._refs
        while freed:
            watch = freed.popleft()
            refs.pop(id(watch), None)
            watch.site.freed += 1
        self.generation += 1

    def _new_site(self, kind: str, site: Site, base: Optional[str], now: float) -> SiteStats:
        if len(self._sites) >= self.max_sites:
            self.overflowed += 1
            site = (OVERFLOW_FILE, 0, "")
            stats = self._sites.get((kind, site[0], site[1], site[2]))
            if stats is not None:
                return stats
        stats = SiteStats(kind, site, base, now)
        self._sites[(kind, site[0], site[1], site[2])] = stats
        return stats

    def _forget_ended_threads(self, stats: SiteStats) -> None:
        """Drop the counters of ended threads (``max_per_thread`` keeps its value)."""
        per_thread = stats.per_thread
        alive = self._alive
        for serial in [s for s in per_thread if s not in alive]:
            del per_thread[serial]
        stats.pruned_at = self._ended_count

    def _make_room(self, stats: SiteStats) -> None:
        per_thread = stats.per_thread
        self._forget_ended_threads(stats)
        while len(per_thread) >= THREADS_PER_SITE:
            del per_thread[min(per_thread, key=per_thread.__getitem__)]

    def _forget_names(self) -> None:
        alive = self._alive
        excess = len(self._names) - MAX_NAMES
        for serial in [s for s in self._names if s not in alive][:excess]:
            del self._names[serial]

    def _verdict(self, stats: SiteStats) -> str:
        """Retention when more instances are alive than the threshold and the threads need."""
        live = stats.live
        return RETENTION if live > self.threshold and live > stats.threads else CHURN

    # -- readers --------------------------------------------------------------------------

    def snapshot(self) -> list[dict[str, Any]]:
        """Copies of every site, suspects first then by count; verdicts brought up to date."""
        with self._lock:
            if self._freed or self._ended:
                self._drain()
            sites = []
            for stats in self._sites.values():
                if stats.suspect:
                    stats.verdict = self._verdict(stats)
                sites.append(stats.as_dict(self._names))
        sites.sort(key=lambda s: (not s["suspect"], -s["max_per_thread"], -s["created"]))
        return sites

    def totals(self) -> dict[str, int]:
        """Process-wide counts."""
        with self._lock:
            if self._freed or self._ended:
                self._drain()
            live = sum(s.live for s in self._sites.values())
            return {
                "sites": len(self._sites),
                "created": self.total_created,
                "live": live,
                "watched": len(self._refs),
                "suspects": sum(1 for s in self._sites.values() if s.suspect),
                "overflowed": self.overflowed,
                "threads_alive": len(self._alive),
            }

    # -- scoped readers (pytest plugin, memory watcher); never on the hot path -------------

    def checkpoint(self) -> Checkpoint:
        """The counts now, to compare with later (:meth:`since`). O(sites + thread counters)."""
        with self._lock:
            if self._freed or self._ended:
                self._drain()
            return {
                key: (stats.created, stats.live, dict(stats.per_thread))
                for key, stats in self._sites.items()
            }

    def since(self, checkpoint: Checkpoint, threshold: int) -> list[dict[str, Any]]:
        """Sites where one thread created more than ``threshold`` instances since ``checkpoint``.

        The copies carry the counts of the interval (``created``, ``threads``,
        ``max_per_thread``, ``max_thread``, ``live`` grown) and a verdict computed from them.
        """
        found = []
        with self._lock:
            if self._freed or self._ended:
                self._drain()
            for key, stats in self._sites.items():
                created0, live0, threads0 = checkpoint.get(key, (0, 0, {}))
                if stats.created - created0 <= threshold:
                    continue  # no thread can have crossed it
                best, best_serial, threads = 0, 0, 0
                for serial, count in stats.per_thread.items():
                    delta = count - threads0.get(serial, 0)
                    if delta > 0:
                        threads += 1
                        if delta > best:
                            best, best_serial = delta, serial
                if best <= threshold:
                    continue
                site = stats.as_dict(self._names)
                live = max(stats.live - live0, 0)
                site.update(
                    created=stats.created - created0,
                    threads=threads,
                    max_per_thread=best,
                    max_thread=self._names.get(best_serial, "?"),
                    live=live,
                    suspect=True,
                    verdict=RETENTION if live > threshold and live > threads else CHURN,
                    top_threads=[],
                )
                found.append(site)
        found.sort(key=lambda s: -s["max_per_thread"])
        return found

    def live_counts(self) -> dict[tuple[str, str, int, str], tuple[int, int, bool, Optional[str]]]:
        """(created, live, suspect, verdict) of every site, by key. O(sites), no copies of
        per-thread counters."""
        with self._lock:
            if self._freed or self._ended:
                self._drain()
            return {
                key: (s.created, s.live, s.suspect, s.verdict) for key, s in self._sites.items()
            }

    # -- sampling for the sizing of sites (outputs/sizing.py); never on the hot path --------

    def sample_live(self, key: tuple[str, str, int, str], limit: int) -> list[object]:
        """Up to ``limit`` live instances of the site ``key`` (kind, file, line, function).

        Strong references handed to the caller, never kept here. O(watched instances): a
        walk over the weak references, called for a few sites when a report is built.
        """
        with self._lock:
            stats = self._sites.get(key)
            if stats is None or limit <= 0:
                return []
            watches = [w for w in self._refs.values() if w.site is stats]
        found = []
        for watch in watches:
            obj = watch()
            if obj is not None:
                found.append(obj)
                if len(found) >= limit:
                    break
        return found
