"""Reading the process's memory: its resident size (/proc) and its limit (variable, cgroup).

The limit is ``LEAKAGENT_MEMORY_LIMIT`` when set, else the container's cgroup limit (v2
``memory.max``, v1 ``memory.limit_in_bytes``; the smallest finite one from the process's
cgroup up to the root of the mount), else none. Everything reads with ``os`` calls only: it
runs on the watcher's raw thread (see :func:`_read_small`).
"""

from __future__ import annotations

import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Optional

    from leakagent.core.config import Config

# Bound at import, when the agent starts: eventlet/gevent monkey-patching later replaces
# os.read with a green version that must not run on the watcher's raw OS thread.
_os_read = os.read
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
