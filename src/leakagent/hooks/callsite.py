"""Find the call site to blame: the first frame in the program's own code.

A raw caller is usually library code (``boto3/__init__.py``, ``requests/api.py``), a wrapt
frame (with ``WRAPT_DISABLE_EXTENSIONS=1``) or the agent itself. Frames are skipped by file
name, never by a fixed depth:

* the agent, wrapt and a target's own packages are passed over;
* another installed library (``site-packages``) or the standard library that made the call
  for the program (kombu building a ``redis.Redis``) is passed over too, and remembered as
  ``via`` ("kombu/transport/redis.py:2062"), so the user's line is blamed;
* with no user frame on the stack, or when the creation happened while a library or
  standard-library module was being imported, the first such frame is the site, its
  ``origin`` "library" or "stdlib" ("agent" when only agent frames are left).

A site is ``(file, line, function)`` for the program's own line reached directly (the common
case, no extra tuple fields), else ``(file, line, function, origin, via)``.
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from types import FrameType

    from leakagent.core.tracker import Site

UNKNOWN: Site = ("<unknown>", 0, "<unknown>", "agent", None)

AGENT_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep  # leakagent/
_STDLIB = os.path.dirname(os.__file__) + os.sep
_PACKAGES = "-packages" + os.sep  # site-packages, dist-packages

_USER, _STDLIB_FRAME, _SKIP, _LIBRARY = 0, 1, 2, 3
_getframe = sys._getframe
_ORIGIN = {_STDLIB_FRAME: "stdlib", _LIBRARY: "library"}


def _is_stdlib(filename: str) -> bool:
    if filename.startswith("<frozen"):
        return True
    return filename.startswith(_STDLIB) and _PACKAGES not in filename


def short_path(filename: str) -> str:
    """A library file as users read it: below site-packages, or below the stdlib."""
    if _PACKAGES in filename:
        return filename.split(_PACKAGES, 1)[1]
    if filename.startswith(_STDLIB):
        return filename[len(_STDLIB) :]
    return filename


class SiteFinder:
    """Finds call sites, skipping the agent, wrapt and a target's own package directories."""

    __slots__ = ("_at", "_kinds", "_skip")

    def __init__(self, skip_prefixes: tuple[str, ...] = ()) -> None:
        self._skip = (AGENT_DIR, *skip_prefixes)
        self._kinds: dict[str, int] = {}
        self._at: dict[int, tuple[object, Site]] = {}  # id(code) << 32 | offset -> site

    def add_skip(self, *prefixes: str) -> None:
        """Also skip files under these directories (e.g. wrapt once it is imported)."""
        self._skip = (*self._skip, *prefixes)
        self._kinds.clear()
        self._at.clear()

    def find_fast(self, depth: int = 1) -> Site:
        """:meth:`find` without ``constructing``, cheaper when the first frame past the
        skipped ones is the program's own: its site is cached by (code, instruction offset),
        so neither the line number nor the qualified name is computed again, and the same
        tuple comes back (bounded cache)."""
        try:
            frame: FrameType | None = _getframe(depth + 1)
        except ValueError:
            return UNKNOWN
        kinds = self._kinds
        while frame is not None:
            code = frame.f_code
            kind = kinds.get(code.co_filename)
            if kind is None:
                kind = self._kind(code.co_filename)
            if kind != _SKIP:
                break
            frame = frame.f_back
        if frame is None:
            return UNKNOWN
        if kind != _USER:
            return self.find(depth + 1)
        # by id: hashing a code object hashes its bytecode and constants, every time; the
        # entry keeps the code, so the id cannot be reused while it is cached
        key = id(code) << 32 | frame.f_lasti  # one int: ~80 B less per cached site than a pair
        entry = self._at.get(key)
        if entry is not None and entry[0] is code:
            return entry[1]
        site = (code.co_filename, frame.f_lineno or 0, _qualname(frame))
        if len(self._at) < 20_000:
            self._at[key] = (code, site)
        return site

    def cached(self, code: object, offset: int) -> Site | None:
        """The site :meth:`find_fast` cached for a frame at ``(code, offset)``: found only when
        that frame was the first past the skipped ones and the program's own, so its site does
        not depend on the rest of the stack."""
        entry = self._at.get(id(code) << 32 | offset)
        return entry[1] if entry is not None and entry[0] is code else None

    def direct(self, frame: FrameType) -> Site | None:
        """The site of ``frame`` when it is the program's own code (what :meth:`find_fast`
        returns when ``frame`` is the first frame past the skipped ones), else None. Not
        cached: its caller (the ``threading.local`` hook) is asked again only for a site's
        first creations on each thread, and most sites create once (~120 B each in a cache)."""
        code = frame.f_code
        kind = self._kinds.get(code.co_filename)
        if kind is None:
            kind = self._kind(code.co_filename)
        if kind != _USER:
            return None
        return (code.co_filename, frame.f_lineno or 0, _qualname(frame))

    def _kind(self, filename: str) -> int:
        kind = self._kinds.get(filename)
        if kind is None:
            if filename.startswith(self._skip):
                kind = _SKIP
            elif _is_stdlib(filename):
                kind = _STDLIB_FRAME
            elif _PACKAGES in filename:
                kind = _LIBRARY
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
        via: FrameType | None = None
        via_kind = _SKIP
        kinds = self._kinds
        while frame is not None:
            code = frame.f_code
            kind = kinds.get(code.co_filename)
            if kind is None:
                kind = self._kind(code.co_filename)
            if kind == _USER:
                if constructing is None or not _is_method_of(frame, constructing):
                    site = (code.co_filename, frame.f_lineno or 0, _qualname(frame))
                    if via is None:
                        return site
                    where = f"{short_path(via.f_code.co_filename)}:{via.f_lineno or 0}"
                    return (*site, "user", where)
            elif kind != _SKIP:
                if via is None:
                    via, via_kind = frame, kind
                elif code.co_filename.startswith("<frozen importlib"):
                    break  # made while a module was being imported: blame that module
            frame = frame.f_back
        if via is None:
            return UNKNOWN
        code = via.f_code
        return (code.co_filename, via.f_lineno or 0, _qualname(via), _ORIGIN[via_kind], None)


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
