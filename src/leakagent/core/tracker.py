"""The tracker core: counts per (kind, call site) and per thread, live instances, suspects.

Imports neither wrapt nor OpenTelemetry, and nothing heavy: it is on the start-up path.

* **The rule** (``docs/design.md``, "Detection"): correct code keeps about one instance per
  thread alive at a time (a per-thread cache), one in all (shared) or a small fixed set; the
  bug makes one per call without end. A site's *concurrency* is the most threads alive at
  the same time that created there; every creation that does not raise it is *excess*. The
  excess fills a bucket that leaks one creation per ``refresh_seconds`` (a client rebuilt
  for fresh credentials never fills it); a site is a suspect when the bucket holds
  ``threshold`` creations, or when the instances alive exceed the concurrency by
  ``threshold`` (retention, however slow the creations).
* **Lock-free hot path.** Each thread counts in its own cell per site (only that thread
  writes it). The shared lock is taken on a thread's first creation at a site and when a
  cell has made its allowance of creations since it last reported: before a verdict the
  allowances add up to less than what is left to reach the threshold, so the suspect is
  found at the same creation as with a lock on every call; afterwards they double (a few
  lock operations per thread and site). Readers sum the cells under the lock: counts stay
  exact. Not an RLock: eventlet's ``monkey_patch()`` turns existing RLocks green, which
  hangs a real thread (the report writer). The SIGTERM handler checks the lock first.
* **Live instances** are watched with weak references kept in a set per site, whose
  callback is that set's C method ``discard``: a freed instance leaves the set by itself, no
  Python code runs in a deallocator (a Python callback crashed CPython 3.11 inside
  ``_thread._local``'s deallocator), nothing is queued, and ``len(set)`` is the live count.
  The references hash and compare by their own identity, never calling the instance's
  ``__hash__``/``__eq__``. Exact up to ``SAMPLE_FROM`` live instances per site; past that,
  a new set at twice the stride is opened (one instance in ``stride`` watched, standing for
  the ones skipped): at most ``SAMPLE_FROM`` references per doubling, so 1M kept alive cost
  ~11k references whatever the count. Verdicts are decided at ``threshold`` plus the
  concurrency, far below ``SAMPLE_FROM``, where ``live`` is exact.
* Threads are told apart by a serial number, not by ``threading.get_ident()`` (reused).
  An ended thread's cells are folded into the site (bounded memory under thread churn).
* Memory is bounded: at most ``max_sites`` sites (then one overflow site per kind), at most
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
    from collections.abc import Sequence
    from typing import Any, Callable, Optional, Union

    Site = Union[tuple[str, int, str], tuple[str, int, str, str, Optional[str]]]
    """A call site: (file, line, function), or with its origin and the library frame it came
    through: (file, line, function, origin, via)."""

    Key = tuple[str, str, int, str]
    Checkpoint = dict[Key, tuple[int, int, dict[int, int], int]]

THREADS_PER_SITE = 128  # per-thread counters listed per site in reports (top threads)
MAX_NAMES = 4096  # thread names kept for reports (names of ended threads go first)
OVERFLOW_FILE = "<other call sites>"
LOCAL_KIND = "threading.local"
SAMPLE_FROM = 1024  # live instances watched one by one per site before sampling
MAX_FAST_KEYS = 20_000  # fast-path keys per thread, at most
MAX_ALLOWANCE = 1 << 16  # lock-free creations per cell between two reports, at most
REFRESH_SECONDS = 60.0
MAX_STRIDE = 1 << 24
STRIDE_OF_SUSPECTS = 16  # once flagged, one instance in 16 is watched (live: an estimate)
MAX_SUSPECT_STRIDE = 64  # ... thinning out to one in 64 while nothing is kept (Tracker._report)

CONSTRUCTION_DEPTH: ContextVar[int] = ContextVar("leakagent_construction_depth", default=0)
"""How many counted client constructions are running in this context. Anything created inside
one (a nested client, a ``threading.local`` a client keeps per instance) belongs to it and is
not counted again."""

CHURN = "churn"
RETENTION = "retention"
PER_CALL = "per_call"
THREAD_CHURN = "thread_churn"
QUIET_ORIGINS = ("stdlib", "agent")


class _Cell:
    """One thread's counters at one site: written lock-free by that thread only.

    ``quick`` lets a caller that holds the cell count a creation without calling the tracker
    (``threading.local``'s ``__new__``): while ``count < quick``, ``count += 1`` is all
    :meth:`Tracker.record` would do (no instance due to be watched, the allowance not used
    up). It is ``min(limit, mark + stride - 1)``, set whenever the tracker sets ``limit`` or
    passes on a creation, so before a verdict (stride 1) every creation is recorded.
    """

    __slots__ = (
        "code",
        "count",
        "flushed",
        "klass",
        "limit",
        "mark",
        "quick",
        "serial",
        "stats",
        "untracked",
    )

    def __init__(self, stats: SiteStats, serial: int) -> None:
        self.stats = stats
        self.serial = serial
        self.count = 0
        self.flushed = 0  # count when last reported under the lock
        self.untracked = 0
        # ``count`` at the last creation that was watched (or could not be): the ones since
        # were skipped by sampling, and the next watched one stands for them
        self.mark = 0
        self.limit = 0  # the lock is taken again when ``count`` reaches it
        self.quick = 0
        self.code: object = None  # the code object of the thread's fast-path keys, if any
        self.klass: object = None  # the class of its offset keys (see Tracker.remember)


class SiteStats:
    """Counters of one (kind, call site); the per-thread ones live in its cells."""

    __slots__ = (
        "alive_creators",
        "base",
        "cells",
        "concurrency",
        "confirm_from",
        "dead_created",
        "dead_max",
        "dead_max_thread",
        "dead_untracked",
        "debt",
        "debt_time",
        "discard",
        "exempt",
        "file",
        "first",
        "first_seen",
        "flagged_after",
        "function",
        "kind",
        "last_seen",
        "levels",
        "line",
        "live_peak",
        "origin",
        "stride",
        "suspect",
        "suspect_since",
        "threads",
        "verdict",
        "via",
        "warned_retention",
        "watch_cap",
        "watches",
    )

    def __init__(self, kind: str, site: Site, base: Optional[str], now: float) -> None:
        self.kind = kind
        self.base = base
        self.file, self.line, self.function = site[0], site[1], site[2]
        self.origin: str = site[3] if len(site) > 3 else "user"
        self.via: Optional[str] = site[4] if len(site) > 4 else None
        is_local = kind == LOCAL_KIND or base == LOCAL_KIND
        # Not findings: the standard library's and the agent's own sites, the overflow site,
        # and a threading.local a library object keeps per instance (its owner is what to
        # look at, not the local).
        self.exempt = (
            self.origin in QUIET_ORIGINS
            or self.file == OVERFLOW_FILE
            or (is_local and (self.via is not None or self.origin == "library"))
        )
        # a tuple, replaced under the lock: ~40 B less per site than a list, ~180 B less than
        # a dict of one
        self.cells: tuple[_Cell, ...] = ()
        self.alive_creators = 0
        self.concurrency = 0  # most creating threads alive at the same time
        self.threads = 0
        self.dead_created = 0
        self.dead_untracked = 0
        self.dead_max = 0
        self.dead_max_thread = ""
        # The first watched instance: a plain weak reference, no set (most sites make one
        # instance; a set, its callback and its level list cost ~400 B more per site).
        self.first: Optional[ref[Any]] = None
        # The current level (one watched per ``stride``), from the second watched instance.
        self.watches: Optional[set[_Watch]] = None
        self.discard: Any = None  # the weakref callback (C): ``watches.discard``
        self.watch_cap = SAMPLE_FROM
        self.levels: Sequence[tuple[int, set[_Watch]]] = ()  # a list from the first set on
        self.debt = 0.0  # excess creations not yet leaked away
        self.debt_time = now
        self.stride = 1
        self.live_peak = 0
        self.first_seen = now
        self.last_seen = now
        self.suspect = False
        self.suspect_since = 0.0
        self.flagged_after: Optional[dict[str, float]] = None
        self.verdict: Optional[str] = None
        self.warned_retention = False
        # ``created`` when a sampled churn suspect went back to watching every instance, to
        # confirm (or not) the retention its sample suggests; minus ``created`` when the last
        # such look found none (the next one waits until twice as many were made); or 0
        self.confirm_from = 0

    @property
    def created(self) -> int:
        return self.dead_created + sum(cell.count for cell in self.cells)

    @property
    def untracked(self) -> int:
        return self.dead_untracked + sum(cell.untracked for cell in self.cells)

    @property
    def live(self) -> int:
        """Watched instances not yet freed (a lower bound when ``untracked`` > 0; an
        estimate once sampled: each reference of a level stands for ``stride`` instances, the
        ones skipped since the last watched one are not counted)."""
        return self._first_alive() + sum(stride * len(w) for stride, w in self.levels)

    @property
    def live_counted(self) -> int:
        """The live instances among those watched one by one: what a verdict may rest on.

        A sampled level is no evidence of retention: a pool's threads run in step, so the one
        in 16 each watches falls at about the same moment on all of them, and 32 threads each
        holding one instance show 0 or 32 references, which ``live`` counts as 0 or 512. A
        sample that suggests retention makes the site watch every instance again to know
        (see ``Tracker._report``)."""
        exact = self._first_alive()
        for stride, watches in self.levels:
            if stride == 1:
                exact += len(watches)
        return exact

    @property
    def watched(self) -> int:
        return self._first_alive() + sum(len(watches) for _, watches in self.levels)

    def _first_alive(self) -> int:
        first = self.first
        return 1 if first is not None and first() is not None else 0

    @property
    def per_thread(self) -> dict[int, int]:
        return {cell.serial: cell.count for cell in self.cells}

    def max_thread(self, names: dict[int, str]) -> tuple[int, str]:
        best, name = self.dead_max, self.dead_max_thread
        for cell in self.cells:
            if cell.count > best:
                best, name = cell.count, names.get(cell.serial, "?")
        return best, name

    def cause(self, created: int) -> str:
        """thread_churn when the excess comes mostly from new threads, not repeated calls."""
        repeats = created - self.threads
        new_threads = self.threads - self.concurrency
        return THREAD_CHURN if new_threads > repeats else PER_CALL

    def as_dict(self, names: Optional[dict[int, str]] = None) -> dict[str, Any]:
        """A plain copy, safe to hand to other threads (``names``: thread serial -> name)."""
        names = names or {}
        created = self.created
        untracked = self.untracked
        most, most_thread = self.max_thread(names)
        top = sorted(((cell.count, cell.serial) for cell in self.cells), reverse=True)[:10]
        return {
            "kind": self.kind,
            "base": self.base,
            "file": self.file,
            "line": self.line,
            "function": self.function,
            "origin": self.origin,
            "via": self.via,
            "created": created,
            "threads": self.threads,
            "concurrency": self.concurrency,
            "excess": max(created - self.concurrency, 0),
            "cause": self.cause(created),
            "max_per_thread": most,
            "max_thread": most_thread,
            "live": self.live,
            "live_exact": untracked == 0 and self.stride == 1,
            "live_peak": self.live_peak,
            "suspect": self.suspect,
            "verdict": self.verdict,
            "first_seen": self.first_seen,
            "last_seen": self.last_seen,
            "suspect_since": self.suspect_since or None,
            "flagged_after": dict(self.flagged_after) if self.flagged_after else None,
            "top_threads": [
                {"thread": names.get(serial, "?"), "created": count} for count, serial in top
            ],
        }


Cell = _Cell
"""The cell class, for the C fast path (``hooks/_countnew.c``), which reads its slots in place."""


def _allow_quick(cell: _Cell, stride: int) -> None:
    """Set ``cell.quick`` from its limit, its mark and the site's stride (see ``_Cell``)."""
    quick = cell.mark + stride - 1
    cell.quick = quick if quick < cell.limit else cell.limit


def _new_level(stats: SiteStats, stride: int) -> set[_Watch]:
    """Watch one instance in ``stride`` from now on, in a set of its own (under the lock).

    The levels whose instances are all gone are dropped: a site that goes back and forth
    between sampling and confirming keeps a few levels, not one per change."""
    stats.stride = stride
    watches: set[_Watch] = set()
    stats.watches = watches
    stats.discard = watches.discard
    stats.levels = [*(level for level in stats.levels if level[1]), (stride, watches)]
    return watches


class _Watch(ref):  # type: ignore[type-arg]
    """A weak reference hashed and compared by its own identity (in C): putting it in a set
    never runs the instance's ``__hash__``/``__eq__``, and works for unhashable ones."""

    __slots__ = ()
    __hash__ = object.__hash__
    __eq__ = object.__eq__
    __ne__ = object.__ne__


_RawLocal: Any = _thread._local.__mro__[-2]  # the C type, even once threading.local is patched


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
        threshold: int = 40,
        max_sites: int = 10_000,
        max_live_refs: int = 200_000,
        on_suspect: Optional[Callable[[dict[str, Any], str], None]] = None,
        refresh_seconds: float = REFRESH_SECONDS,
    ) -> None:
        self.threshold = threshold
        self.max_sites = max_sites
        self.max_live_refs = max_live_refs
        # References per set: the first level holds ``first`` and a set, SAMPLE_FROM in all.
        # One int object shared by every site.
        self._watch_cap = max(min(SAMPLE_FROM, max_live_refs) - 1, 0)
        self.refresh_seconds = refresh_seconds
        self.on_suspect = on_suspect
        """Called (outside the lock) with a site copy and the event: 'suspect' or 'retention'."""
        self.started = time.time()
        self._reset_state()

    def _reset_state(self) -> None:
        self._lock = _thread.allocate_lock()
        # One slot object for the tracker's life (the threading.local hook holds it): after a
        # fork the surviving thread's part is emptied, the others' went with their threads.
        slot = getattr(self, "_tls", None)
        if slot is None:
            # ``cells`` maps ``(kind, site)`` to the thread's cell, and the fast-path keys
            # (``offset``, or ``(id(code), offset, class)``: ``remember``) to the same cells;
            # ``token`` ends with the thread
            self._tls = _RawLocal()
        else:
            vars(slot).clear()
        self._sites: dict[Key, SiteStats] = {}
        self._made = 0  # references made (racy count): when to count the live ones again
        self._recount_at = 4096
        self._capped = False  # max_live_refs reached: new instances are not watched
        self._serials = itertools.count(1)
        self._alive: dict[int, _ThreadEnd] = {}  # thread serial -> reference to its token
        self._thread_cells: dict[int, dict[Any, _Cell]] = {}
        self._ended: deque[_ThreadEnd] = deque()  # threads that ended since the last drain
        self._on_thread_end = self._ended.append
        self._names: dict[int, str] = {}  # thread serial -> name (bounded: MAX_NAMES)
        self.overflowed = 0
        self._generation = 0  # bumped by changes under the lock

    def reset_after_fork(self) -> None:
        """A forked child starts with its own, empty counts and a fresh lock."""
        self._reset_state()
        self.started = time.time()

    @property
    def generation(self) -> tuple[int, int, int]:
        """Changes when anything a report shows may have changed (writers skip unchanged
        reports). O(sites + cells): read by the periodic writer, never on the hot path."""
        with self._lock:
            created = live = 0
            for stats in self._sites.values():
                created += stats.created
                live += stats.live
            return (self._generation, created, live)

    @property
    def slot(self) -> Any:
        """The per-thread slot, whose ``cells`` the ``threading.local`` fast path reads (the
        same object for the tracker's life, forks included)."""
        return self._tls

    @property
    def total_created(self) -> int:
        with self._lock:
            return sum(stats.created for stats in self._sites.values())

    # -- the hot path (no lock) -----------------------------------------------------------

    def record(self, kind: str, site: Site, obj: object, base: Optional[str] = None) -> None:
        """Count one new instance of ``kind`` created at ``site`` on the current thread."""
        try:
            cells = self._tls.cells
        except AttributeError:
            cells = self._new_thread()
        key = (kind, site[0], site[1], site[2])
        cell = cells.get(key)
        if cell is None:
            self._record_locked(key, site, obj, base, cell, cells)
            return
        self.record_cell(cell, obj)

    def record_cell(self, cell: _Cell, obj: object) -> None:
        """:meth:`record` for a caller that holds the thread's cell (the fast path)."""
        count = cell.count
        # the lock also when a thread ended: its cells are folded (memory back) at once, not
        # at whatever creation next needs the lock
        if count >= cell.limit or self._ended:
            self._record_locked(None, None, obj, None, cell, None)
            return
        count += 1
        cell.count = count
        stats = cell.stats
        stride = stats.stride
        if stride != 1 and count - cell.mark < stride:  # the next watched one stands for it
            quick = cell.mark + stride - 1  # _allow_quick, inline: the hottest path
            cell.quick = quick if quick < cell.limit else cell.limit
            return
        watches = stats.watches
        if watches is not None and len(watches) < stats.watch_cap and not self._capped:
            try:
                watches.add(_Watch(obj, stats.discard))
            except TypeError:  # the type does not support weak references
                cell.untracked += count - cell.mark
            cell.mark = count
        elif self._capped:  # max_live_refs reached: not watched (live: a lower bound)
            cell.untracked += count - cell.mark
            cell.mark = count
        else:  # the set is full, or the site has none yet
            self._crowded(cell, obj)
            return
        if stride != 1:
            quick = count + stride - 1  # (the mark is the count now)
            cell.quick = quick if quick < cell.limit else cell.limit
        self._made += 1
        if self._made >= self._recount_at:
            self._recount()

    def remember(self, key: tuple[int, int, type], code: object, kind: str, site: Site) -> None:
        """Let the current thread's creations at ``key`` (``(id(code), offset, class)``) count
        in its cell of ``(kind, site)`` without calling :meth:`record` while the cell's
        ``quick`` allows it. The cell keeps ``code``: the id in the key stays its own.

        The key is kept as the bare ``offset`` when the thread has no cell there yet (the
        cell also keeps the class): the fast paths look that up first and check the cell's
        ``code`` and ``klass``, which skips building, hashing and comparing a tuple (about a
        third of the ``threading.local`` fast path). Another code or class at a taken offset
        is kept under the whole tuple, which they look up next."""
        cells = self._tls.cells
        cell = cells.get((kind, site[0], site[1], site[2]))
        # from the second creation on: most sites create once, and a key costs ~150 B
        if cell is None or cell.count < 2 or len(cells) >= MAX_FAST_KEYS or key in cells:
            return
        if cell.code is None:
            cell.code = code
        elif cell.code is not code:
            return  # one code per cell (another code at the same site takes the slow path)
        offset, cls = key[1], key[2]
        with self._lock:
            if offset not in cells and (cell.klass is None or cell.klass is cls):
                cell.klass = cls
                cells[offset] = cell
            elif cells.get(offset) is not cell or cell.klass is not cls:
                cells[key] = cell  # the offset is another site's, or another class's

    def _watch_locked(self, cell: _Cell, obj: object) -> None:
        """The watching part of :meth:`record`, under the lock."""
        stats = cell.stats
        if cell.count - cell.mark < stats.stride:
            return
        watches = stats.watches
        if watches is not None and len(watches) < stats.watch_cap and not self._capped:
            try:
                watches.add(_Watch(obj, stats.discard))
            except TypeError:
                cell.untracked += cell.count - cell.mark
            cell.mark = cell.count
        else:
            self._open_level(cell, obj)
        self._made += 1

    def _crowded(self, cell: _Cell, obj: object) -> None:
        with self._lock:
            self._open_level(cell, obj)

    def _open_level(self, cell: _Cell, obj: object) -> None:
        """The site's current set is full: watch one in twice as many, or stop (the cap);
        or it has no set yet: its first watched instance, or its first set."""
        stats = cell.stats
        if stats.watches is None and not self._capped:
            weight, cell.mark = cell.count - cell.mark, cell.count
            try:
                if stats.first is None:
                    stats.first = ref(obj)
                    return
                _new_level(stats, 1).add(_Watch(obj, stats.discard))
            except TypeError:  # the type does not support weak references
                cell.untracked += weight
                if stats.watches is None:  # the next ones find out without the lock
                    _new_level(stats, 1)
            return
        self._count_watched()
        weight, cell.mark = cell.count - cell.mark, cell.count
        if self._capped or stats.stride >= MAX_STRIDE:
            cell.untracked += weight
            return
        watches = stats.watches
        if watches is None:  # (the cap was lifted by the recount)
            watches = _new_level(stats, 1)
        elif len(watches) >= stats.watch_cap:
            watches = _new_level(stats, stats.stride * 2)
        try:
            watches.add(_Watch(obj, stats.discard))
        except TypeError:
            cell.untracked += weight

    def _recount(self) -> None:
        with self._lock:
            self._count_watched()

    def _count_watched(self) -> int:
        """Count the live references (under the lock; O(sites)) and set the cap flag."""
        total = sum(stats.watched for stats in self._sites.values())
        self._capped = total >= self.max_live_refs
        self._recount_at = self._made + max((self.max_live_refs - total) // 2, 1024)
        return total

    def _new_thread(self) -> dict[Any, _Cell]:
        """This thread's cells, made on its first creation."""
        with self._lock:
            serial = next(self._serials)
            token = _ThreadToken(serial, _thread_name())
            end = _ThreadEnd(token, self._on_thread_end)
            end.serial = serial
            cells: dict[Any, _Cell] = {}
            self._alive[serial] = end
            self._names[serial] = token.name
            self._thread_cells[serial] = cells
        self._tls.token = token
        self._tls.cells = cells
        return cells

    # -- under the lock -------------------------------------------------------------------

    def _record_locked(
        self,
        key: Any,
        site: Any,
        obj: object,
        base: Optional[str],
        cell: Optional[_Cell],
        cells: Any,
    ) -> None:
        """A new cell (``key``, ``site``, ``base`` and ``cells`` needed) or one that has made
        its allowance."""
        now = time.time()
        event = None
        with self._lock:
            if self._ended:
                self._drain()
            first = cell is None
            if cell is None:
                cell = self._new_cell(key, site, base, cells, now)
            cell.count += 1
            self._generation += 1
            self._watch_locked(cell, obj)
            event = self._report(cell, first, now)
            _allow_quick(cell, cell.stats.stride)
        if event is not None and self.on_suspect is not None:
            self.on_suspect(event[1], event[0])

    def _new_cell(
        self, key: Key, site: Site, base: Optional[str], cells: dict[Any, _Cell], now: float
    ) -> _Cell:
        """The thread's cell of ``key`` (``(kind, file, line, function)``): the thread's cells
        and the site index share the key tuple."""
        stats = self._sites.get(key)
        if stats is None:
            stats = self._new_site(key, site, base, now)
        serial = self._tls.token.serial
        for existing in stats.cells:  # the overflow site
            if existing.serial == serial:
                cells[key] = existing
                return existing
        cell = _Cell(stats, serial)
        stats.cells = (*stats.cells, cell)
        stats.threads += 1
        stats.alive_creators += 1
        cells[key] = cell
        return cell

    def _new_site(self, key: Key, site: Site, base: Optional[str], now: float) -> SiteStats:
        kind = key[0]
        if len(self._sites) >= self.max_sites:
            self.overflowed += 1
            site = (OVERFLOW_FILE, 0, "")
            key = (kind, OVERFLOW_FILE, 0, "")
            stats = self._sites.get(key)
            if stats is not None:
                return stats
        stats = SiteStats(kind, site, base, now)
        stats.watch_cap = self._watch_cap
        self._sites[key] = stats
        return stats

    def _leak(self, stats: SiteStats, excess: int, now: float) -> None:
        """Add ``excess`` creations to the bucket, less what leaked since the last report.

        The creations a cell made lock-free are taken as spread over that time (a rebuild
        every minute reported in one go leaks as it would one by one); a cell reports at
        least every ``threshold // 4`` creations before a verdict, so an idle hour forgives
        at most that much of a burst.
        """
        debt = stats.debt + excess
        # ``now`` was read before the lock: a thread that waited for it brings an earlier
        # time than the last report's, and a negative interval would add to the debt (with
        # ``--threshold 1`` that alone made a per-thread cache a suspect)
        elapsed = now - stats.debt_time
        if elapsed > 0.0:
            stats.debt_time = now
            if self.refresh_seconds > 0:
                debt -= elapsed / self.refresh_seconds
        stats.debt = debt if debt > 0.0 else 0.0  # the constant: no float kept per site

    def _report(self, cell: _Cell, first: bool, now: float) -> Optional[tuple[str, dict[str, Any]]]:
        """Fold the cell's new creations into its site's rule; a suspect event or None."""
        stats = cell.stats
        delta = cell.count - cell.flushed
        cell.flushed = cell.count
        stats.last_seen = now
        excess = delta
        if first and stats.alive_creators > stats.concurrency:
            stats.concurrency = stats.alive_creators
            excess -= 1
        self._leak(stats, excess, now)
        created = stats.created
        live = stats.live
        # the peak from the low end of a sample's reading, never more than is known alive:
        # one watched instance at one in 64 stands for 1 to 64 (a 10-thread churn read 64)
        low = live - (stats.stride - 1)  # stride 1: live itself
        if low > stats.live_peak:
            stats.live_peak = low
        threshold = self.threshold
        event = None
        live_excess = stats.live_counted - stats.concurrency
        if stats.exempt:
            pass
        elif not stats.suspect:
            # what the other threads made since they last reported counts too (read racily:
            # only their own thread writes them)
            cells = stats.cells
            pending = sum(other.count - other.flushed for other in cells)
            full = stats.debt + pending
            # the bucket is full once less than one creation is missing (a fraction leaked
            # since the last creation does not postpone the verdict)
            if full > threshold - 1 or live_excess >= threshold:
                stats.suspect = True
                stats.suspect_since = now
                stats.flagged_after = {
                    "created": created,
                    "seconds": round(now - stats.first_seen, 3),
                }
                stats.verdict = RETENTION if live_excess >= threshold else CHURN
                stats.warned_retention = stats.verdict == RETENTION
                event = ("suspect", stats.as_dict(self._names))
                if stats.verdict == CHURN and stats.stride < STRIDE_OF_SUSPECTS:
                    _new_level(stats, STRIDE_OF_SUSPECTS)  # the verdict is made: sample
            else:  # before a verdict: the cells together may not make what is left
                left = min(int(threshold - full), threshold - live_excess)
                share = max(min((left - 1) // max(len(cells), 1), threshold // 4), 0)
                for other in cells:
                    other.limit = other.count + share
                    other.quick = 0  # (stride 1: no creation passes the tracker)
                return None
        elif not stats.warned_retention:
            if live_excess >= threshold:
                stats.verdict = RETENTION
                stats.warned_retention = True
                stats.confirm_from = 0
                event = ("retention", stats.as_dict(self._names))
            elif stats.confirm_from > 0:
                # watched one by one since: kept instances would have passed by now
                if created - stats.confirm_from >= 2 * (stats.concurrency + threshold):
                    stats.confirm_from = -created
                    _new_level(stats, STRIDE_OF_SUSPECTS)
            elif (
                stats.stride > 1
                and not self._capped
                and created >= -2 * stats.confirm_from
                and live - stats.concurrency - (stats.stride - 1) >= threshold
            ):  # the sample suggests retention: watch every instance to know
                stats.confirm_from = created
                _new_level(stats, 1)
                for other in stats.cells:  # (racy, as above) report soon, watch each one
                    other.limit = other.count + max(threshold // 4, 1)
                    other.quick = 0
            elif (
                1 < stats.stride < MAX_SUSPECT_STRIDE
                and created >= 1024 * stats.stride
                and live <= stats.concurrency
            ):
                # A busy churn suspect whose sample keeps nothing beyond one per thread: watch
                # half as many (a watched creation costs ~4.6k instructions; one in 16, ~290
                # on each creation). Its retention is then suggested once the kept instances
                # pass concurrency + threshold + stride - 1: at most 48 later than at one in
                # 16 (one in 32 from 16k creations on, one in 64 from 32k).
                _new_level(stats, stats.stride * 2)
        if stats.confirm_from > 0:  # a verdict is pending: report as before one
            cell.limit = cell.count + max(threshold // 4, 1)
        else:
            cell.limit = cell.count + min(max(cell.count, 1), MAX_ALLOWANCE)
        return event

    def _drain(self) -> None:
        ended = self._ended
        now = 0.0
        while ended:
            serial = ended.popleft().serial
            self._alive.pop(serial, None)
            self._names[serial] = self._names.pop(serial, "?")  # move to the newest end
            cells = self._thread_cells.pop(serial, None)
            if cells:
                now = now or time.time()
                for cell in set(cells.values()):
                    self._fold(cell, now)
        if len(self._names) > MAX_NAMES:
            self._forget_names()
        self._generation += 1

    def _fold(self, cell: _Cell, now: float) -> None:
        """An ended thread's cell: its counts move into the site."""
        stats = cell.stats
        if cell not in stats.cells:
            return
        delta = cell.count - cell.flushed
        if delta:
            self._leak(stats, delta, now)
        stats.cells = tuple(other for other in stats.cells if other is not cell)
        stats.alive_creators -= 1
        stats.dead_created += cell.count
        stats.dead_untracked += cell.untracked
        if cell.count > stats.dead_max:
            stats.dead_max = cell.count
            stats.dead_max_thread = self._names.get(cell.serial, "?")

    def _forget_names(self) -> None:
        alive = self._alive
        excess = len(self._names) - MAX_NAMES
        for serial in [s for s in self._names if s not in alive][:excess]:
            del self._names[serial]

    def _verdict(self, stats: SiteStats) -> str:
        """Retention when the instances alive pass the concurrency by the threshold."""
        excess = stats.live_counted - stats.concurrency
        return RETENTION if excess >= self.threshold else CHURN

    def _check_unreported(self, stats: SiteStats) -> None:
        """A reader's pass: creations not yet reported by their cells may make a suspect."""
        if stats.suspect or stats.exempt:
            return
        pending = sum(cell.count - cell.flushed for cell in stats.cells)
        live_excess = stats.live_counted - stats.concurrency
        if stats.debt + pending > self.threshold - 1 or live_excess >= self.threshold:
            for cell in stats.cells:
                cell.limit = cell.quick = 0  # the next creation on each thread reports

    # -- readers --------------------------------------------------------------------------

    def snapshot(self) -> list[dict[str, Any]]:
        """Copies of every site, suspects first then by count; verdicts brought up to date."""
        with self._lock:
            if self._ended:
                self._drain()
            sites = []
            for stats in self._sites.values():
                if stats.suspect:
                    stats.verdict = self._verdict(stats)
                else:
                    self._check_unreported(stats)
                sites.append(stats.as_dict(self._names))
        sites.sort(key=lambda s: (not s["suspect"], -s["excess"], -s["created"]))
        return sites

    def totals(self) -> dict[str, int]:
        """Process-wide counts."""
        with self._lock:
            if self._ended:
                self._drain()
            created = live = 0
            for stats in self._sites.values():
                created += stats.created
                live += stats.live
            return {
                "sites": len(self._sites),
                "created": created,
                "live": live,
                "watched": self._count_watched(),
                "suspects": sum(1 for s in self._sites.values() if s.suspect),
                "overflowed": self.overflowed,
                "threads_alive": len(self._alive),
            }

    def sample_live(self, key: Key, limit: int) -> list[object]:
        """Up to ``limit`` live instances of a site (strong references for the caller only)."""
        with self._lock:
            stats = self._sites.get(key)
            if stats is None or limit <= 0:
                return []
            watches: list[Any] = [stats.first] if stats.first is not None else []
            watches += [watch for _, level in stats.levels for watch in list(level)]
        found: list[object] = []
        for watch in watches:
            obj = watch()
            if obj is not None:
                found.append(obj)
                if len(found) >= limit:
                    break
        return found

    # -- scoped readers (pytest plugin, memory watcher); never on the hot path -------------

    def checkpoint(self) -> Checkpoint:
        """The counts now, to compare with later (:meth:`since`). O(sites + thread counters)."""
        with self._lock:
            if self._ended:
                self._drain()
            return {
                key: (stats.created, stats.live, stats.per_thread, stats.threads)
                for key, stats in self._sites.items()
            }

    def since(self, checkpoint: Checkpoint, threshold: int) -> list[dict[str, Any]]:
        """Sites whose creations since ``checkpoint`` pass the threads that made them by
        ``threshold`` or more (on one thread: more than ``threshold`` creations).

        The copies carry the counts of the interval (``created``, ``threads``,
        ``max_per_thread``, ``max_thread``, ``live`` grown) and a verdict computed from them.
        """
        found = []
        with self._lock:
            if self._ended:
                self._drain()
            for key, stats in self._sites.items():
                if stats.exempt:
                    continue
                created0, live0, threads0, total_threads0 = checkpoint.get(key, (0, 0, {}, 0))
                created = stats.created - created0
                if created <= threshold:
                    continue  # cannot pass it
                best, best_serial, active, new_alive = 0, 0, 0, 0
                for cell in stats.cells:
                    delta = cell.count - threads0.get(cell.serial, 0)
                    if cell.serial not in threads0:
                        new_alive += 1
                    if delta > 0:
                        active += 1
                        if delta > best:
                            best, best_serial = delta, cell.serial
                ended_new = max(stats.threads - total_threads0 - new_alive, 0)
                threads = active + ended_new
                if created - threads < threshold:
                    continue
                site = stats.as_dict(self._names)
                live = max(stats.live - live0, 0)
                kept = stats.live_counted - live0  # (what a verdict may rest on)
                site.update(
                    created=created,
                    threads=threads,
                    excess=created - threads,
                    max_per_thread=best or stats.dead_max,
                    max_thread=self._names.get(best_serial, "?") if best else stats.dead_max_thread,
                    live=live,
                    suspect=True,
                    verdict=RETENTION if kept - threads >= threshold else CHURN,
                    top_threads=[],
                )
                found.append(site)
        found.sort(key=lambda s: -s["excess"])
        return found

    def live_counts(self) -> dict[Key, tuple[int, int, bool, Optional[str]]]:
        """(created, live, suspect, verdict) of every site, by key. O(sites + cells)."""
        with self._lock:
            if self._ended:
                self._drain()
            return {
                key: (s.created, s.live, s.suspect, s.verdict) for key, s in self._sites.items()
            }
