"""The ``leakagent`` logger: stderr only, imported lazily (``logging`` costs ~7 ms at start-up).

Every line reads ``leakagent: ...``. The logger does not propagate to the root logger, so a
program's own logging configuration neither duplicates nor swallows the agent's warnings;
a program that wants them elsewhere can add a handler to ``logging.getLogger("leakagent")``.
"""

from __future__ import annotations

import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    import logging

_logger: logging.Logger | None = None
_level = "WARNING"
_said: dict[str, object] = {}


def set_level(level: str) -> None:
    """Set the level used when the logger is first created (or now, if it exists)."""
    global _level
    _level = level
    if _logger is not None:
        _logger.setLevel(level)


def get_logger() -> logging.Logger:
    """The configured ``leakagent`` logger, created on first use."""
    global _logger
    if _logger is None:
        import logging

        logger = logging.getLogger("leakagent")
        if not logger.handlers:
            handler = logging.StreamHandler(sys.stderr)
            handler.setFormatter(logging.Formatter("leakagent: %(message)s"))
            logger.addHandler(handler)
        logger.propagate = False
        logger.setLevel(_level)
        _logger = logger
    return _logger


def warning(message: str) -> None:
    """Log a warning (never raises)."""
    try:
        get_logger().warning(message)
    except Exception:  # pragma: no cover - stderr closed or logging broken
        pass


def info(message: str) -> None:
    """Log an informational line (never raises)."""
    try:
        get_logger().info(message)
    except Exception:  # pragma: no cover
        pass


def warning_once(key: str, message: str) -> None:
    """Log ``message`` the first time ``key`` is seen in this process (thread-safe)."""
    mine = object()
    if _said.setdefault(key, mine) is mine:  # dict.setdefault is atomic
        warning(message)


def reset_after_fork() -> None:
    """A forked child says its own warnings again."""
    _said.clear()
