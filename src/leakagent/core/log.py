"""The agent's own lines: always on the process's real stderr, each naming its process.

Every line reads ``leakagent: MESSAGE [pid N PROGRAM]``: the pid (and program name) tell the
lines of several workers apart.

The lines go to file descriptor 2 — never to whatever ``sys.stderr`` is at the time: under
click's ``CliRunner`` or ``contextlib.redirect_stderr`` that is the program's captured output,
and once that stream is closed a ``logging`` handler bound to it printed ``--- Logging error
---`` instead. The ``logging`` module is not used at all: importing it costs
~7 ms, and its fork hooks misbehave when it is first imported from a before-fork hook.
"""

from __future__ import annotations

import os
import sys

LEVELS = {"DEBUG": 10, "INFO": 20, "WARNING": 30, "ERROR": 40, "CRITICAL": 50}
_threshold = LEVELS["WARNING"]
_said: dict[str, object] = {}


def set_level(level: str) -> None:
    """Lines below ``level`` (a ``logging`` level name) are not written."""
    global _threshold
    _threshold = LEVELS.get(level.upper(), LEVELS["WARNING"])


def enabled(level: str) -> bool:
    """True when lines of ``level`` are written (say, "DEBUG")."""
    return LEVELS[level] >= _threshold


def process_tag() -> str:
    """``pid N PROGRAM``: this process, as a line of the agent names it (computed each time:
    a forked child has its own pid)."""
    argv = getattr(sys, "argv", None) or [""]
    program = os.path.basename(str(argv[0]))
    if program in ("", "-c", "-", "-m"):
        return f"pid {os.getpid()}"
    return f"pid {os.getpid()} {program}"


def write_stderr(text: str) -> None:
    """Write ``text`` (one or more lines, no trailing newline) to fd 2. Never raises.

    The program's own pending ``sys.__stderr__`` output is flushed first, so lines keep their
    order with it.
    """
    try:
        stream = sys.__stderr__
        if stream is not None and not stream.closed:
            stream.flush()
    except Exception:  # reentrant call from a signal handler, a broken stream...
        pass
    data = (text + "\n").encode("utf-8", "backslashreplace")
    try:
        while data:
            written = os.write(2, data)
            data = data[written:]
    except OSError:  # fd 2 closed: nowhere to say it
        pass


def _emit(level: str, message: str) -> None:
    if LEVELS[level] < _threshold:
        return
    try:
        write_stderr(f"leakagent: {message} [{process_tag()}]")
    except Exception:  # pragma: no cover - never raise into the program
        pass


def warning(message: str) -> None:
    """Write a warning line (never raises)."""
    _emit("WARNING", message)


def info(message: str) -> None:
    """Write an informational line, shown with ``LEAKAGENT_LOG_LEVEL=INFO`` (never raises)."""
    _emit("INFO", message)


def debug(message: str) -> None:
    """Write a debug line, shown with ``LEAKAGENT_LOG_LEVEL=DEBUG`` (never raises)."""
    _emit("DEBUG", message)


def warning_once(key: str, message: str) -> None:
    """Log ``message`` the first time ``key`` is seen in this process (thread-safe)."""
    mine = object()
    if _said.setdefault(key, mine) is mine:  # dict.setdefault is atomic
        warning(message)


def reset_after_fork() -> None:
    """A forked child says its own warnings again."""
    _said.clear()
