"""Process memory and the container's memory limit, read from /proc and the cgroup files.

No OpenTelemetry here (unit-tested without it). Everything returns None when unknown.
"""

from __future__ import annotations

import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Optional

UNLIMITED_V1 = 1 << 60  # cgroup v1 writes a huge number (page-rounded LONG_MAX) for "no limit"


def rss_bytes(statm: str = "/proc/self/statm") -> Optional[int]:
    """Resident set size of this process in bytes (Linux), or None."""
    try:
        with open(statm, "rb") as file:
            fields = file.read().split()
        return int(fields[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError, AttributeError):
        return _rusage_fallback()


def _rusage_fallback() -> Optional[int]:
    try:
        import resource
        import sys

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        # Not the current RSS but the peak: better than nothing where /proc is missing.
        return int(peak if sys.platform == "darwin" else peak * 1024)
    except Exception:
        return None


def _read_limit(path: str) -> Optional[int]:
    try:
        with open(path) as file:
            value = file.read().strip()
    except OSError:
        return None
    if not value or value == "max":
        return None
    try:
        limit = int(value)
    except ValueError:
        return None
    return limit if 0 < limit < UNLIMITED_V1 else None


def cgroup_memory_limit(root: str = "/sys/fs/cgroup", proc_cgroup: str = "/proc/self/cgroup") -> (
    Optional[tuple[int, str]]
):
    """(limit in bytes, source file) of this process's cgroup, or None when unlimited/unknown.

    cgroup v2: ``memory.max`` of the process's own cgroup (from /proc/self/cgroup), then of the
    namespace root (what a container sees); cgroup v1: ``memory/memory.limit_in_bytes``.
    """
    candidates: list[str] = []
    try:
        with open(proc_cgroup) as file:
            lines = file.read().splitlines()
    except OSError:
        lines = []
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        hierarchy, controllers, path = parts
        path = path.lstrip("/")
        if hierarchy == "0" and controllers == "":
            candidates.append(os.path.join(root, path, "memory.max"))
        elif "memory" in controllers.split(","):
            candidates.append(os.path.join(root, "memory", path, "memory.limit_in_bytes"))
    candidates += [
        os.path.join(root, "memory.max"),
        os.path.join(root, "memory", "memory.limit_in_bytes"),
    ]
    seen: set[str] = set()
    for candidate in candidates:
        candidate = os.path.normpath(candidate)
        if candidate in seen:
            continue
        seen.add(candidate)
        limit = _read_limit(candidate)
        if limit is not None:
            return limit, candidate
    return None
