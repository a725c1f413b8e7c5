"""The agent's background threads leave before a fork and come back after it.

A process that forks while other threads run may deadlock in the child, and Python 3.12+ says
so: ``DeprecationWarning: This process (pid=...) is multi-threaded, use of fork() may lead to
deadlocks in the child``, counting the OS threads (``/proc/self/stat``) right after the fork.
Under the agent a single-threaded program has two more (the report writer, the memory
watcher), so each of its forks warned. Each such thread is a
:class:`Worker`: before a fork its loop is woken and returns, the forking thread waits until
the OS thread is gone, and after the fork the parent starts it again (the child starts its own
from scratch, ``runtime/lifecycle.py``).

Python 3.13 counts the threads *after* the after-fork hooks, when the workers run again: there,
for a program that was single-threaded at the fork, a one-shot warnings filter ignores that one
warning (the fork itself happened with no thread of the agent's; :class:`_OurThreadsWarning`).

Raw ``_thread`` threads, as the loops themselves (``threading`` costs ~7 ms at start-up).
"""

from __future__ import annotations

import _thread
import sys
import time

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Callable, Optional

raw_lock = _thread.allocate_lock
"""Taken at import, before gevent or eventlet can make new locks green."""

monotonic = time.monotonic
"""The loops' clock (never made green)."""

parking = False
"""True from the before-fork hook to the after-fork hooks: a loop that sees it returns."""

EXIT_WAIT = 2.0
"""Seconds a fork waits at most for a worker to finish its step (a report being written)."""
GONE_WAIT = 0.2
"""Seconds a fork waits at most for the finished workers' OS threads to disappear."""

_lock = raw_lock()
_running: list[Worker] = []
_parked: list[Worker] = []
_single_at_fork = False
_WARNS_AT_FORK = sys.version_info >= (3, 12)
"""Below 3.12 nothing counts the threads: a loop that has returned is enough."""
_COUNTED_AFTER_HOOKS = sys.version_info >= (3, 13)


class _OurThreadsWarning:
    """The ``message`` of a warnings filter: matches the next fork warning once, then nothing.

    The C warnings code calls ``.match(text)`` on a filter's message, as on a compiled regex.
    """

    def __init__(self) -> None:
        self.armed = True

    def match(self, text: str) -> bool:
        if self.armed and "is multi-threaded, use of fork() may lead to deadlocks" in text:
            self.armed = False
            return True
        return False


def _filters() -> Optional[list[object]]:
    try:
        import _warnings

        filters: list[object] = getattr(_warnings, "filters")  # noqa: B009 (typed too narrowly)
        return filters
    except (ImportError, AttributeError):  # pragma: no cover
        return None


def _drop_fork_warning_filters() -> None:
    filters = _filters()
    if filters is None:
        return
    ours = [f for f in filters if isinstance(f, tuple) and isinstance(f[1], _OurThreadsWarning)]
    for entry in ours:
        filters.remove(entry)
    if ours:
        _filters_mutated()


def _ignore_the_next_fork_warning() -> None:
    filters = _filters()
    if filters is not None:
        filters.insert(0, ("ignore", _OurThreadsWarning(), DeprecationWarning, None, 0))
        _filters_mutated()


def _filters_mutated() -> None:
    try:
        import _warnings

        getattr(_warnings, "_filters_mutated")()  # noqa: B009 (private, not in typeshed)
    except (ImportError, AttributeError):  # pragma: no cover
        pass


class Worker:
    """A raw thread running ``run(resumed)``, which returns when ``parking`` is true once woken.

    ``resumed`` is True when it runs again after a fork: the loop then waits out the rest of
    its interval first (a step at every fork would make forks slow: a report rewrite each).
    """

    def __init__(self, run: Callable[[bool], None], wake: Callable[[], None]) -> None:
        self._run = run
        self.wake = wake
        self._exited = raw_lock()

    def start(self, resumed: bool = False) -> None:
        exited = raw_lock()
        exited.acquire()
        self._exited = exited
        with _lock:
            _running.append(self)
        try:
            _thread.start_new_thread(self._main, (exited, resumed))
        except BaseException:
            with _lock:
                _running.remove(self)
            raise

    def _main(self, exited: _thread.LockType, resumed: bool) -> None:
        try:
            self._run(resumed)
        finally:
            with _lock:
                if self in _running:
                    _running.remove(self)
            exited.release()

    def wait_exited(self, timeout: float) -> bool:
        if self._exited.acquire(timeout=timeout):
            self._exited.release()
            return True
        return False


def os_thread_count() -> Optional[int]:
    """This process's OS threads, as CPython counts them for its fork warning (Linux)."""
    try:
        with open("/proc/self/stat", "rb") as handle:
            stat = handle.read()
        return int(stat[stat.rindex(b")") + 2 :].split()[17])
    except (OSError, ValueError, IndexError):
        return None


def before_fork() -> None:
    """Park every running worker: its loop returns, its OS thread is gone. Never raises."""
    global parking, _single_at_fork
    _single_at_fork = False
    try:
        if _COUNTED_AFTER_HOOKS:
            _drop_fork_warning_filters()
        with _lock:
            workers = list(_running)
        if not workers:
            return
        count = os_thread_count()
        parking = True
        for worker in workers:
            worker.wake()
        nap = raw_lock()
        nap.acquire()
        for worker in workers:
            worker.wait_exited(EXIT_WAIT)
        _parked[:] = workers
        if count is None or not _WARNS_AT_FORK:
            return
        waited = 0.0
        while waited < GONE_WAIT:
            now = os_thread_count()
            if now is None or now <= count - len(workers):
                _single_at_fork = now == 1
                return
            nap.acquire(timeout=0.0005)  # sleeps without the GIL; time.sleep may be green
            waited += 0.0005
    except Exception:  # pragma: no cover - the fork goes on in any case
        pass


def after_fork_in_parent() -> None:
    """Start the parked workers again."""
    global parking
    parking = False
    workers, _parked[:] = list(_parked), []
    for worker in workers:
        try:
            worker.start(resumed=True)
        except Exception:  # pragma: no cover - no thread to be had: the periodic step stops
            pass
    if workers and _single_at_fork and _COUNTED_AFTER_HOOKS:
        try:
            _ignore_the_next_fork_warning()
        except Exception:  # pragma: no cover
            pass


def after_fork_in_child() -> None:
    """The child starts its own workers (the parent's are not there): forget them."""
    global parking, _lock
    parking = False
    _lock = raw_lock()
    _parked.clear()
    _running.clear()
