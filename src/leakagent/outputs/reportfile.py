"""The report file on disk: written atomically and safely, one writer per path.

* The temporary file gets a random name and is created exclusively, without following a
  symlink, with mode 0600 from the start: a symlink or a file planted at a predictable name
  (say in ``/tmp``) is never followed nor reused (``O_EXCL | O_NOFOLLOW``).
* Temporary files left by writers killed mid-write (SIGKILL, the OOM killer) are removed by
  the next writer of the same report: their name carries the writer's pid.
* Two unrelated processes given one path (no ``{pid}``) would silently overwrite each other's
  report: a writer notices another one (the file at the path is not the one it wrote last)
  and switches to ``NAME.<pid>.EXT``, with one warning.

The file is written from the agent's own OS thread. Green-thread libraries (eventlet,
gevent) replace os functions once the program starts; called from a thread that is not
theirs, the green ones wait on a hub that never runs there (a hang at exit, seen with
eventlet). So the functions are the ones there were when the agent loaded.
"""

from __future__ import annotations

import os
import stat

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Optional

_open, _write, _close, _replace, _unlink = os.open, os.write, os.close, os.replace, os.unlink
_fstat, _lstat, _kill, _listdir, _urandom = os.fstat, os.lstat, os.kill, os.listdir, os.urandom

_FLAGS = (
    os.O_WRONLY
    | os.O_CREAT
    | os.O_EXCL
    | getattr(os, "O_NOFOLLOW", 0)
    | getattr(os, "O_CLOEXEC", 0)
    | getattr(os, "O_BINARY", 0)
)
STALE_AGE = 60.0
"""A temporary file older than this (seconds) is abandoned whoever made it."""


def temp_prefix(path: str) -> str:
    """``.NAME.`` : every temporary file of the report ``path`` starts so."""
    return f".{os.path.basename(path)}."


def _create_temp(path: str) -> tuple[int, str]:
    directory = os.path.dirname(path) or "."
    for _ in range(8):
        name = f"{temp_prefix(path)}{os.getpid()}.{_urandom(6).hex()}.tmp"
        temp = os.path.join(directory, name)
        try:
            return _open(temp, _FLAGS, 0o600), temp
        except FileExistsError:  # a planted file or symlink, or (astronomically) a clash
            continue
    raise FileExistsError(f"no free temporary name next to {path}")


def write_atomically(data: bytes, path: str) -> int:
    """Write ``data`` to ``path`` (temp file + rename); returns the new file's inode."""
    fd, temp = _create_temp(path)
    try:
        try:
            inode = _fstat(fd).st_ino
            view = memoryview(data)
            while view:
                view = view[_write(fd, view) :]
        finally:
            _close(fd)
        _replace(temp, path)
        return inode
    except BaseException:
        try:
            _unlink(temp)
        except OSError:
            pass
        raise


def _pid_alive(pid: int) -> bool:
    try:
        _kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: alive, someone else's
        return True
    return True


def remove_stale_temps(path: str, now: float) -> int:
    """Remove temporary files of ``path`` left by dead writers (or too old); how many."""
    directory = os.path.dirname(path) or "."
    prefix = temp_prefix(path)
    removed = 0
    try:
        names = _listdir(directory)
    except OSError:
        return 0
    uid = os.geteuid() if hasattr(os, "geteuid") else None
    for name in names:
        if not (name.startswith(prefix) and name.endswith(".tmp")):
            continue
        pid_text = name[len(prefix) :].split(".", 1)[0]
        full = os.path.join(directory, name)
        try:
            info = _lstat(full)
        except OSError:
            continue
        if not stat.S_ISREG(info.st_mode) or (uid is not None and info.st_uid != uid):
            continue  # never remove what is not a plain file of ours
        dead = pid_text.isdigit() and int(pid_text) != os.getpid() and not _pid_alive(int(pid_text))
        if dead or now - info.st_mtime > STALE_AGE:
            try:
                _unlink(full)
                removed += 1
            except OSError:
                pass
    return removed


class ReportFile:
    """One process's report file: notices a second writer of the same path."""

    __slots__ = ("_first", "_inode", "path", "shared")

    def __init__(self, path: str, *, shared: bool) -> None:
        self.path = path
        self.shared = shared
        """True when the path is the configured one without ``{pid}`` (others may use it)."""
        self._inode: Optional[int] = None
        self._first = True

    def other_writer(self) -> Optional[str]:
        """Why another process seems to write this path, or None."""
        if not self.shared:
            return None
        try:
            info = os.stat(self.path)
        except OSError:
            return None
        if self._inode is not None:
            return "another process" if info.st_ino != self._inode else None
        pid = _pid_in(self.path)
        if pid is not None and pid != os.getpid() and _pid_alive(pid) and not _is_final(self.path):
            return f"process {pid}"
        return None

    def write(self, data: bytes, now: float) -> None:
        if self._first:
            self._first = False
            remove_stale_temps(self.path, now)
        self._inode = write_atomically(data, self.path)


def _head(path: str) -> str:
    try:
        with open(path, "rb") as f:
            return f.read(4096).decode("utf-8", "replace")
    except OSError:
        return ""


def _pid_in(path: str) -> Optional[int]:
    """The pid written in a report's ``process`` section (read from its first 4 KiB)."""
    head = _head(path)
    at = head.find('"process"')
    at = head.find('"pid":', at) if at >= 0 else -1
    if at < 0:
        return None
    digits = head[at + 6 :].lstrip()
    end = 0
    while end < len(digits) and digits[end].isdigit():
        end += 1
    return int(digits[:end]) if end else None


def _is_final(path: str) -> bool:
    return '"final": true' in _head(path)


def unique_path(path: str, pid: int) -> str:
    """``NAME.<pid>.EXT``."""
    stem, ext = os.path.splitext(path)
    return f"{stem}.{pid}{ext}"
