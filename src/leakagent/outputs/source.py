"""The code in the answer: a suspect's source line and a few lines around it.

Read from the file when the report is built (never a variable's value), with ``os`` calls
only: this runs on the report writer's raw thread, where ``open()`` or an import could hang
under eventlet/gevent. String literals on a line that looks like it carries a credential
(``key``, ``secret``, ``password``, ``token``...) are blanked: a source line must not carry a
secret out of the process.
"""

from __future__ import annotations

import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Optional

CONTEXT = 2
"""Lines shown before and after the site's line."""
MAX_FILE = 4 * 1024 * 1024
_SECRET_WORDS = ("key", "secret", "passw", "pwd", "token", "auth", "credential", "bearer", "@")
_os_read = os.read


def _read(path: str) -> Optional[bytes]:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        chunks = []
        size = 0
        while size < MAX_FILE:
            chunk = _os_read(fd, 65536)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        return b"".join(chunks)
    except OSError:
        return None
    finally:
        os.close(fd)


def redact(line: str) -> str:
    """``line`` with the contents of its string literals blanked if it may hold a secret."""
    lower = line.lower()
    if not any(word in lower for word in _SECRET_WORDS):
        return line
    out = []
    quote = ""
    for char in line:
        if quote:
            if char == quote:
                quote = ""
                out.append(char)
            elif not out[-1].endswith("…"):
                out.append("…")
            continue
        if char in "'\"":
            quote = char
        out.append(char)
    return "".join(out)


def context(path: str, line: int, around: int = CONTEXT) -> Optional[list[list[object]]]:
    """``[[number, text], ...]`` from ``line - around`` to ``line + around``; None if unreadable."""
    if line <= 0 or not path or path.startswith("<"):
        return None
    data = _read(path)
    if data is None:
        return None
    lines = data.decode("utf-8", "replace").splitlines()
    if line > len(lines):
        return None
    first = max(line - around, 1)
    last = min(line + around, len(lines))
    return [[number, redact(lines[number - 1].rstrip())] for number in range(first, last + 1)]
