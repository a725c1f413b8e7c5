"""Notice SIGTERM at the C level, without a Python signal handler.

A Python handler runs only between two bytecodes of the main thread: a program inside one long
C call (``sum(range(6 * 10**8))``, a blocking C library) would live on until the call
returns, and one stuck in C would never die. Instead ``faulthandler.register(SIGTERM,
chain=False)`` installs a C handler that only writes the threads' tracebacks (ignored) to a
pipe; the agent's own OS thread, blocked on that pipe, wakes at once, writes the final report,
then puts the default action back and sends SIGTERM again: the process dies of SIGTERM as it
would have. ``signal.getsignal(SIGTERM)`` still says ``SIG_DFL``, and a program that installs
its own handler later simply replaces ours (the agent steps aside; asyncio's ``set_wakeup_fd``
is not touched).
"""

from __future__ import annotations

import _signal  # type: ignore[import-not-found]
import os
import select

try:
    import faulthandler
except ImportError:  # pragma: no cover - an interpreter built without it
    faulthandler = None  # type: ignore[assignment]

SIGTERM: int = _signal.SIGTERM
# Captured at load, before eventlet or gevent can replace them with green versions that hang
# on a thread that is not theirs.
_kill, _getpid, _pipe, _close = os.kill, os.getpid, os.pipe, os.close
_poll = getattr(select, "poll", None)


def available() -> bool:
    """Can SIGTERM be noticed at the C level here (not on Windows)?"""
    return faulthandler is not None and hasattr(faulthandler, "register")


def program_owns_sigterm() -> bool:
    """Has the program (or the environment) set SIGTERM to anything but the default?"""
    try:
        return bool(_signal.getsignal(SIGTERM) != _signal.SIG_DFL)
    except (ValueError, OSError):
        return True


class TermWatch:
    """A pipe written by the C-level SIGTERM handler; read by the reporter's thread."""

    __slots__ = ("read_fd", "registered", "write_fd")

    def __init__(self) -> None:
        self.read_fd = -1
        self.write_fd = -1
        self.registered = False

    def register(self) -> bool:
        """Register the C handler if SIGTERM still has its default action; True if done."""
        if not available() or program_owns_sigterm():
            return False
        read_fd, write_fd = _pipe()  # both close-on-exec
        os.set_blocking(write_fd, False)  # a signal handler must never block
        try:
            # all_threads: with only the current thread, nothing is written when the signal
            # lands on a thread without a Python state (a C library's), and no one wakes.
            faulthandler.register(SIGTERM, file=write_fd, all_threads=True, chain=False)
        except (RuntimeError, OSError, ValueError):
            _close(read_fd)
            _close(write_fd)
            return False
        self.read_fd, self.write_fd, self.registered = read_fd, write_fd, True
        return True

    def fired(self) -> bool:
        """Has the C handler written to the pipe (SIGTERM received, not yet acted on)?"""
        if not self.registered or _poll is None:
            return False
        try:
            poller = _poll()
            poller.register(self.read_fd, select.POLLIN)
            return bool(poller.poll(0))
        except (OSError, ValueError):
            return False

    def restore_default(self) -> None:
        """Give SIGTERM its default action back, unless the program has set its own since."""
        if not self.registered:
            return
        self.registered = False
        if program_owns_sigterm():
            return
        try:
            faulthandler.unregister(SIGTERM)
        except Exception:
            pass

    def forget_after_fork(self) -> None:
        """In a forked child: the parent's pipe is not ours (the child registers its own).

        The inherited C handler would write to a closed (or reused) descriptor and the child
        would no longer die of SIGTERM: the default action comes back first."""
        self.restore_default()
        for fd in (self.read_fd, self.write_fd):
            if fd >= 0:
                try:
                    _close(fd)
                except OSError:
                    pass
        self.read_fd = self.write_fd = -1

    def die_of_sigterm(self) -> None:
        """Put the default action back and die of SIGTERM, as without the agent."""
        try:
            faulthandler.unregister(SIGTERM)  # back to the action saved at register: SIG_DFL
        except Exception:
            pass
        _kill(_getpid(), SIGTERM)
