"""The memory watcher thread, its warning rule and the report's time series.

The kernel's OOM killer sends SIGKILL: no atexit, no last report. So a raw ``_thread`` thread
reads the process's resident memory (``/proc/self/statm``, one small read) every
``LEAKAGENT_MEMORY_INTERVAL`` seconds and, when it crosses a fraction of the memory limit
(``LEAKAGENT_MEMORY_WARN_AT``, default 70 % and 90 %), writes one warning line naming the call
sites whose live instances grew the most, and has the report rewritten at once: the last
words before an OOM kill. Without a limit (see :mod:`leakagent.outputs.memory`): no warning,
only the time series.

The same thread samples the report's bounded time series (:mod:`leakagent.outputs.timeseries`).

Nothing here runs on the start-up path but :meth:`MemoryWatcher.start` (one thread start):
the limit is looked up on the thread itself.
"""

from __future__ import annotations

import _thread
import time

from leakagent.core import forkpause, guard, log
from leakagent.outputs import report as report_mod
from leakagent.outputs import sizing
from leakagent.outputs.memory import read_rss, resolve_limit
from leakagent.outputs.timeseries import FIRST_STEP, TimeSeries, site_fields

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, Optional

    from leakagent.core.config import Config
    from leakagent.core.tracker import Tracker

PART = "memory"

# The loop waits on a raw lock taken from core/forkpause.py, never on time.sleep: eventlet/gevent
# monkey-patching replaces time.sleep with a green version that must not run on this raw thread.
TOP_IN_WARNING = 3
MEASURED_IN_WARNING = 10


human_bytes = report_mod.human_bytes


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
        self.timeseries = TimeSeries(min(FIRST_STEP, self.config.memory_interval))
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
                    # The series' first points come faster than the memory readings.
                    step = min(interval, self.timeseries.step) if self.series else interval
                    self._due = forkpause.monotonic() + step
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
        if self.series and now >= self.timeseries.next_point:
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
        """Append one point of the time series."""
        now = time.time() if now is None else now
        if rss is None:
            rss = self.rss
        with self._lock:
            self.timeseries.sample(self.tracker, now, rss)
            self.version += 1

    # -- the warning ----------------------------------------------------------------------

    def _warn(self, fraction: float, rss: int, now: float) -> None:
        counts = self.tracker.live_counts()
        grown = []
        show_internal = self.config.show_internal
        for key, (created, live, suspect, verdict) in counts.items():
            growth = live - self._baseline.get(key, 0)
            if growth > 0 and report_mod.listed(
                {**site_fields(key), "suspect": suspect}, show_internal
            ):
                grown.append((growth, key, created, live, suspect, verdict))
        grown.sort(key=lambda item: (-item[0], not item[4]))
        del grown[MEASURED_IN_WARNING:]
        self._baseline = {key: value[1] for key, value in counts.items()}
        top = []
        for growth, key, created, live, suspect, verdict in grown:
            entry = site_fields(key)
            each = sizing.site_estimate(self.tracker, key)
            entry.update(
                growth=growth,
                live=live,
                created=created,
                suspect=suspect,
                verdict=verdict,
                bytes_per_instance=each,
                live_bytes=None if each is None else each * live,
            )
            top.append(entry)
        # The site whose growth holds the most memory first, when that is known.
        top.sort(key=lambda e: (-(e["growth"] * (e["bytes_per_instance"] or 0)), -e["growth"]))
        del top[TOP_IN_WARNING:]
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
                "timeseries": self.timeseries.section(),
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
            memory = report_mod.memory_text(site)
            parts.append(
                f"{site['kind']} at {report_mod.display_path(site['file'])}:{site['line']} in "
                f"{site['function']} +{site['growth']} live ({site['live']} live of "
                f"{site['created']} created{flag}{', ' + memory if memory else ''})"
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
