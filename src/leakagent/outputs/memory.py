"""The memory-limit early warning and the report's time series.

The kernel's OOM killer sends SIGKILL: no atexit, no last report. So a raw ``_thread`` thread
reads the process's resident memory (``/proc/self/statm``, one small read) every
``LEAKAGENT_MEMORY_INTERVAL`` seconds and, when it crosses a fraction of the memory limit
(``LEAKAGENT_MEMORY_WARN_AT``, default 70 % and 90 %), writes one warning line naming the call
sites whose live instances grew the most, and has the report rewritten at once: the last
words before an OOM kill.

The limit is ``LEAKAGENT_MEMORY_LIMIT`` when set, else the container's cgroup limit (v2
``memory.max``, v1 ``memory.limit_in_bytes``; the smallest finite one from the process's
cgroup up to the root of the mount), else none: then no warning, only the time series.

The same thread samples the bounded time series of the report (memory, and created/live
instances of the top call sites): at most :data:`MAX_POINTS` points; when full, every other
point is dropped and the step doubles, so the whole run stays covered at a coarser grain.

Nothing here runs on the start-up path but :meth:`MemoryWatcher.start` (one thread start):
the limit is looked up on the thread itself.
"""

from __future__ import annotations

import _thread
import os
import time

from leakagent.core import forkpause, guard, log
from leakagent.outputs import report as report_mod

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, Optional

    from leakagent.core.config import Config
    from leakagent.core.tracker import Tracker

PART = "memory"

# Bound at import, when the agent starts: eventlet/gevent monkey-patching later replaces
# os.read with a green version that must not run on this raw OS thread (the loop waits on a
# raw lock taken from core/forkpause.py, not on time.sleep, for the same reason).
_os_read = os.read
MAX_POINTS = 120
"""Most points in the report's time series."""
SITES_PER_POINT = 5
"""Most call sites (by live instances) recorded in one point."""
MAX_SERIES_SITES = 50
"""Most distinct call sites named by the whole series."""
TOP_IN_WARNING = 3
_V1_UNLIMITED = 1 << 62  # v1 reports "no limit" as LONG_MAX rounded down to a page
CGROUP_ROOT = "/sys/fs/cgroup"


def read_rss(path: str = "/proc/self/statm") -> Optional[int]:
    """Resident set size of this process in bytes; None where /proc is not available."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        data = _os_read(fd, 200)
    finally:
        os.close(fd)
    fields = data.split()
    if len(fields) < 2:
        return None
    return int(fields[1]) * _page_size()


_PAGE: list[int] = []


def _page_size() -> int:
    if not _PAGE:
        try:
            _PAGE.append(os.sysconf("SC_PAGE_SIZE"))
        except (ValueError, OSError, AttributeError):  # pragma: no cover - not POSIX
            _PAGE.append(4096)
    return _PAGE[0]


def _read_small(path: str) -> Optional[str]:
    """A small file's text, read with ``os`` calls only.

    ``open()`` would take io's locks and may import a codec module; this runs on the watcher
    thread, and a lock or a module import held by it when another thread forks would hang
    the child. ``os.open``/``os.read`` hold nothing of Python's.
    """
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        return _os_read(fd, 65536).decode("ascii", "replace")
    except OSError:
        return None
    finally:
        os.close(fd)


def _read_limit(path: str, unlimited_from: Optional[int]) -> Optional[int]:
    text = (_read_small(path) or "").strip()
    if not text.isdigit():
        return None  # "max": no limit at this level
    value = int(text)
    if unlimited_from is not None and value >= unlimited_from:
        return None
    return value or None


def _walk(mount: str, relative: str, filename: str, unlimited_from: Optional[int]) -> list[int]:
    """Limits of ``filename`` from ``mount/relative`` up to ``mount`` (existing levels only).

    Inside a container the cgroup path of /proc/self/cgroup is often the host's, and does not
    exist below the container's mount: then only the mount's own file is read, which is the
    container's limit.
    """
    limits = []
    parts = [p for p in relative.split("/") if p and p not in (".", "..")]
    for depth in range(len(parts), -1, -1):
        directory = os.path.join(mount, *parts[:depth])
        limit = _read_limit(os.path.join(directory, filename), unlimited_from)
        if limit is not None:
            limits.append(limit)
    return limits


def cgroup_limit(
    root: str = CGROUP_ROOT, proc_cgroup: str = "/proc/self/cgroup"
) -> tuple[Optional[int], Optional[str]]:
    """(limit in bytes, where it was read) of this process's cgroup; (None, None) if none."""
    text = _read_small(proc_cgroup)
    if text is None:
        return None, None
    lines = text.splitlines()
    v2_path = v1_path = None
    for line in lines:
        number, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        if number == "0" and controllers == "":
            v2_path = path
        elif "memory" in controllers.split(","):
            v1_path = path
    if v2_path is not None and _read_small(os.path.join(root, "cgroup.controllers")) is not None:
        limits = _walk(root, v2_path, "memory.max", None)
        if limits:
            return min(limits), "cgroup v2 memory.max"
    if v1_path is not None:
        v1_root = os.path.join(root, "memory")
        limits = _walk(v1_root, v1_path, "memory.limit_in_bytes", _V1_UNLIMITED)
        if limits:
            return min(limits), "cgroup v1 memory.limit_in_bytes"
    return None, None


def resolve_limit(config: Config) -> tuple[Optional[int], Optional[str]]:
    """The limit to warn against: the variable, else the cgroup's, else none."""
    if config.memory_limit is not None:
        if config.memory_limit == 0:
            return None, None
        return config.memory_limit, "LEAKAGENT_MEMORY_LIMIT"
    return cgroup_limit(config.cgroup_root)


human_bytes = report_mod.human_bytes


def _site_fields(key: tuple[str, str, int, str]) -> dict[str, Any]:
    return {"kind": key[0], "file": key[1], "line": key[2], "function": key[3]}


class MemoryWatcher:
    """Reads the memory periodically; warns near the limit; keeps the bounded time series."""

    def __init__(
        self,
        tracker: Tracker,
        config: Config,
        *,
        rewrite_report: Callable[[], None],
        report_path: Callable[[], Optional[str]],
        read: Callable[[], Optional[int]] = read_rss,
    ) -> None:
        self.tracker = tracker
        self.config = config
        self.rewrite_report = rewrite_report
        self.report_path = report_path
        self.read = read
        self._lock = _thread.allocate_lock()
        self._nap = forkpause.raw_lock()
        self._due = 0.0
        self._stopped = False
        self.series = False
        self.version = 0
        """Bumped by every new point or warning, so the reporter knows the report changed."""
        self.reset()

    def reset(self) -> None:
        """Forget everything (start, and a forked child)."""
        self.limit: Optional[int] = None
        self.limit_source: Optional[str] = None
        self.rss: Optional[int] = None
        self.rss_peak: Optional[int] = None
        self.warnings: list[dict[str, Any]] = []
        self._warned: set[float] = set()
        self._baseline: dict[tuple[str, str, int, str], int] = {}
        self.points: list[dict[str, Any]] = []
        self.step = self.config.memory_interval
        self._next_point = 0.0
        self._site_ids: dict[tuple[str, str, int, str], int] = {}
        self.running = False

    # -- the thread -----------------------------------------------------------------------

    def start(self, *, series: bool) -> None:
        """Start the watcher thread (the limit is looked up there, not on the caller's).

        Also called in a forked child: the parent's watcher thread may have held the lock at
        fork time, so the child gets a new one."""
        self._lock = _thread.allocate_lock()
        self.reset()
        self._stopped = False
        self.series = series
        if not self.config.memory_watch or guard.is_off(PART):
            return
        self._nap = forkpause.raw_lock()
        self._nap.acquire()
        forkpause.Worker(self._run, self._wake_up).start()  # gone while the process forks

    def _wake_up(self) -> None:
        try:
            self._nap.release()
        except RuntimeError:  # already awake
            pass

    def stop(self) -> None:
        self._stopped = True

    def _run(self, resumed: bool = False) -> None:
        try:
            if not resumed:  # after a fork, the limit and /proc are known
                self.limit, self.limit_source = resolve_limit(self.config)
                if self.limit is None and not self.series:
                    return  # nothing to warn against, nobody to read a series
                if self.read() is None:
                    return  # no /proc here
            self.running = True
            interval = self.config.memory_interval
            while not self._stopped and not forkpause.parking:
                if not resumed:  # after a fork: the rest of the interval first
                    self.tick()
                    self._due = forkpause.monotonic() + interval
                resumed = False
                # a raw lock, woken for a fork
                self._nap.acquire(timeout=max(0.0, self._due - forkpause.monotonic()))
        except Exception as exc:
            self.running = False
            guard.failed(PART, exc)

    def tick(self, now: Optional[float] = None) -> None:
        """One reading: the series point when due, then the limit check."""
        rss = self.read()
        if rss is None:
            return
        now = time.time() if now is None else now
        with self._lock:
            self.rss = rss
            if self.rss_peak is None or rss > self.rss_peak:
                self.rss_peak = rss
        if self.series and now >= self._next_point:
            self.sample(now, rss)
        if self.limit:
            fraction = rss / self.limit
            crossed = [
                f for f in self.config.memory_warn_at if f not in self._warned and fraction >= f
            ]
            if crossed:
                self._warned.update(crossed)
                self._warn(max(crossed), rss, now)

    def final_point(self) -> None:
        """The last reading and point, at exit: the series ends where the process ended."""
        if not self.running:
            return
        rss = self.read()
        if rss is None:
            return
        with self._lock:
            self.rss = rss
            if self.rss_peak is None or rss > self.rss_peak:
                self.rss_peak = rss
        if self.series:
            self.sample(rss=rss)

    # -- time series ----------------------------------------------------------------------

    def sample(self, now: Optional[float] = None, rss: Optional[int] = None) -> None:
        """Append one point (memory, totals, top sites by live instances)."""
        now = time.time() if now is None else now
        if rss is None:
            rss = self.rss
        counts = self.tracker.live_counts()
        top = sorted(counts.items(), key=lambda item: (-item[1][1], -item[1][0]))
        sites = []
        with self._lock:
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
                "t": round(now - self.tracker.started, 3),
                "rss": rss,
                "created": sum(c[0] for c in counts.values()),
                "live": sum(c[1] for c in counts.values()),
                "sites": sites,
            }
            self.points.append(point)
            self.version += 1
            if len(self.points) > MAX_POINTS:
                # Keep the first and every other point: the whole run, at half the grain.
                self.points = self.points[::2]
                self.step *= 2
            self._next_point = now + self.step

    # -- the warning ----------------------------------------------------------------------

    def _warn(self, fraction: float, rss: int, now: float) -> None:
        counts = self.tracker.live_counts()
        grown = []
        for key, (created, live, suspect, verdict) in counts.items():
            growth = live - self._baseline.get(key, 0)
            if growth > 0:
                grown.append((growth, key, created, live, suspect, verdict))
        grown.sort(key=lambda item: (-item[0], not item[4]))
        del grown[TOP_IN_WARNING:]
        self._baseline = {key: value[1] for key, value in counts.items()}
        top = []
        for growth, key, created, live, suspect, verdict in grown:
            entry = _site_fields(key)
            entry.update(
                growth=growth, live=live, created=created, suspect=suspect, verdict=verdict
            )
            top.append(entry)
        record = {
            "at": report_mod.iso(now),
            "fraction": fraction,
            "rss": rss,
            "limit": self.limit,
            "top": top,
        }
        with self._lock:
            self.warnings.append(record)
            self.version += 1
        if self.series:
            self.sample(now, rss)
        path = self.report_path()
        log.warning(warning_line(record, self.limit_source, path))
        self.rewrite_report()

    # -- the report -----------------------------------------------------------------------

    def sections(self) -> dict[str, Any]:
        """The ``memory`` and ``timeseries`` sections of the report (copies); none when the
        watcher is switched off."""
        if not self.config.memory_watch:
            return {}
        with self._lock:
            sites = [
                {"id": site_id, **_site_fields(key)} for key, site_id in self._site_ids.items()
            ]
            return {
                "memory": {
                    "rss": self.rss,
                    "rss_peak": self.rss_peak,
                    "limit": self.limit,
                    "limit_source": self.limit_source,
                    "warn_at": list(self.config.memory_warn_at),
                    "interval": self.config.memory_interval,
                    "warnings": list(self.warnings),
                },
                "timeseries": {
                    "max_points": MAX_POINTS,
                    "step": self.step,
                    "sites": sites,
                    "points": list(self.points),
                },
            }


def warning_line(record: dict[str, Any], source: Optional[str], report_path: Optional[str]) -> str:
    """The one line written when the memory crosses a fraction of the limit."""
    percent = record["rss"] * 100 / record["limit"]
    text = (
        f"memory at {percent:.0f}% of the limit (RSS {human_bytes(record['rss'])} of "
        f"{human_bytes(record['limit'])}, {source or 'limit'}; warns at "
        f"{record['fraction']:.0%})"
    )
    if record["top"]:
        parts = []
        for site in record["top"]:
            flag = f", suspect, {site['verdict']}" if site["suspect"] else ""
            parts.append(
                f"{site['kind']} at {report_mod.display_path(site['file'])}:{site['line']} in "
                f"{site['function']} +{site['growth']} live ({site['live']} live of "
                f"{site['created']} created{flag})"
            )
        text += " — live instances grew most at: " + "; ".join(parts)
    else:
        text += (
            " — no tracked client or threading.local grew: the memory goes elsewhere "
            "(a memory profiler such as memray or tracemalloc will tell where)"
        )
    if report_path:
        text += f"; report rewritten: {report_path}"
    return text
