"""Containment of the agent's own errors: nothing raised inside the agent reaches the program.

Each part of the agent (``local-hook``, ``client-hook``, ``tracker``, ``report``...) reports its
errors here. The first error of a part is logged once and the part switches itself off; the
program goes on as if the agent were not there.

Tests set ``LEAKAGENT_STRICT=1`` so contained errors raise instead of hiding bugs, and
``LEAKAGENT_TEST_FAULT=part[,part]`` to make a part raise on purpose (fault injection).
"""

from __future__ import annotations

import os

from leakagent.core import log

_off: set[str] = set()
errors: list[tuple[str, str]] = []
"""(part, repr of the error) for every contained error, oldest first (at most 100)."""

STRICT = os.environ.get("LEAKAGENT_STRICT", "") == "1"
FAULTS = frozenset(p for p in os.environ.get("LEAKAGENT_TEST_FAULT", "").split(",") if p)


class InjectedFault(RuntimeError):
    """Raised on purpose by a part named in ``LEAKAGENT_TEST_FAULT``."""


def fault_point(part: str) -> None:
    """Raise :class:`InjectedFault` when tests asked for a fault in ``part``."""
    if FAULTS and part in FAULTS:
        raise InjectedFault(f"fault injected in {part}")


def is_off(part: str) -> bool:
    """True once ``part`` has failed and switched itself off."""
    return part in _off


def failed(part: str, exc: BaseException) -> None:
    """Record an error of ``part``: log once, switch the part off; re-raise in strict mode."""
    if len(errors) < 100:
        errors.append((part, repr(exc)))
    if part not in _off:
        _off.add(part)
        log.warning(
            f"internal error in {part} ({type(exc).__name__}: {exc}); "
            f"{part} is switched off, the program goes on"
        )
    if STRICT:
        raise exc
