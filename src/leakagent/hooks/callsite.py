"""Find the call site to blame: the first frame in the program's own code.

A raw caller is usually library code (``boto3/__init__.py``, ``requests/api.py``), a wrapt
frame (with ``WRAPT_DISABLE_EXTENSIONS=1``) or the agent itself. Frames are skipped by file
name, never by a fixed depth. Standard-library frames (``concurrent/futures``, ``functools``)
are passed over too, unless nothing else is left on the stack or the creation happened while
a standard-library module was being imported: then the first standard-library frame is used.
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from types import FrameType

Site = tuple[str, int, str]  # (file path, line number, function qualname)
UNKNOWN: Site = ("<unknown>", 0, "<unknown>")

AGENT_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep  # leakagent/
_STDLIB = os.path.dirname(os.__file__) + os.sep

_USER, _STDLIB_FRAME, _SKIP = 0, 1, 2


def _is_stdlib(filename: str) -> bool:
    if filename.startswith("<frozen"):
        return True
    return filename.startswith(_STDLIB) and "-packages" not in filename


class SiteFinder:
    """Finds call sites, skipping the agent, wrapt and a target's own package directories."""

    __slots__ = ("_kinds", "_skip")

    def __init__(self, skip_prefixes: tuple[str, ...] = ()) -> None:
        self._skip = (AGENT_DIR, *skip_prefixes)
        self._kinds: dict[str, int] = {}

    def add_skip(self, *prefixes: str) -> None:
        """Also skip files under these directories (e.g. wrapt once it is imported)."""
        self._skip = (*self._skip, *prefixes)
        self._kinds.clear()

    def _kind(self, filename: str) -> int:
        kind = self._kinds.get(filename)
        if kind is None:
            if filename.startswith(self._skip):
                kind = _SKIP
            elif _is_stdlib(filename):
                kind = _STDLIB_FRAME
            else:
                kind = _USER
            if len(self._kinds) < 20_000:  # bounded cache
                self._kinds[filename] = kind
        return kind

    def find(self, depth: int = 1, constructing: object = None) -> Site:
        """The site of the first user frame above the caller (``depth`` frames up).

        ``constructing``: the object being built by a program subclass; its own
        ``__init__`` frames (first argument is that object) are passed over, so the site is
        where the subclass is instantiated, not its ``super().__init__()`` line.
        """
        try:
            frame: FrameType | None = sys._getframe(depth + 1)
        except ValueError:
            return UNKNOWN
        fallback: FrameType | None = None
        kinds = self._kinds
        while frame is not None:
            code = frame.f_code
            kind = kinds.get(code.co_filename)
            if kind is None:
                kind = self._kind(code.co_filename)
            if kind == _USER and (constructing is None or not _is_method_of(frame, constructing)):
                return (code.co_filename, frame.f_lineno or 0, _qualname(frame))
            if kind == _STDLIB_FRAME:
                if fallback is None:
                    fallback = frame
                elif code.co_filename.startswith("<frozen importlib"):
                    break  # created while a stdlib module was being imported: blame that

            frame = frame.f_back
        if fallback is None:
            return UNKNOWN
        code = fallback.f_code
        return (code.co_filename, fallback.f_lineno or 0, _qualname(fallback))


def _is_method_of(frame: FrameType, obj: object) -> bool:
    code = frame.f_code
    if not code.co_argcount:
        return False
    return frame.f_locals.get(code.co_varnames[0]) is obj


def _qualname(frame: FrameType) -> str:
    code = frame.f_code
    qualname: str | None = getattr(code, "co_qualname", None)
    if qualname:
        return qualname
    return _qualname_before_311(frame)


_QUALNAMES: dict[object, str] = {}


def _qualname_before_311(frame: FrameType) -> str:
    """Python 3.9/3.10 have no ``co_qualname``: a method's class is found from its first
    argument (``self``/``cls``), the class in its MRO whose attribute is this very code.
    Cached per code object; nested functions keep their plain name."""
    code = frame.f_code
    found = _QUALNAMES.get(code)
    if found is not None:
        return found
    name = code.co_name
    qualname = name
    if code.co_argcount and code.co_varnames[0] in ("self", "cls", "mcs", "klass"):
        first = frame.f_locals.get(code.co_varnames[0])
        owner = first if isinstance(first, type) else type(first)
        for klass in getattr(owner, "__mro__", ()):
            attribute = klass.__dict__.get(name)
            function = getattr(attribute, "__func__", attribute)  # classmethod, staticmethod
            function = getattr(function, "fget", function)  # property
            if getattr(function, "__code__", None) is code:
                qualname = f"{klass.__qualname__}.{name}"
                break
    if len(_QUALNAMES) < 20_000:
        _QUALNAMES[code] = qualname
    return qualname


def package_dir(module_name: str) -> str | None:
    """Directory (with trailing separator) of the top-level package of ``module_name``.

    For a namespace package (``google``, ``azure``: no file of their own) the first package
    with files down the dotted name is used: ``google.cloud.storage`` gives its directory.
    """
    parts = module_name.split(".")
    path = None
    for end in range(1, len(parts) + 1):
        top = sys.modules.get(".".join(parts[:end]))
        if top is None:
            return None
        path = getattr(top, "__file__", None)
        if path:
            break
    if not isinstance(path, str) or not path:
        return None
    directory = os.path.dirname(os.path.abspath(path))
    if os.path.basename(path).startswith("__init__."):
        return directory + os.sep
    return os.path.abspath(path)  # a single-file module: skip just that file
