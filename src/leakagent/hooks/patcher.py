"""The one module that imports wrapt: patches and unpatches client constructors.

It is imported only when a target library is imported (through :mod:`leakagent.hooks.importhook`),
never at start-up. Installing is idempotent (a target already wrapped is left alone) and every
wrapper is remembered so :func:`unpatch_all` restores the original attributes exactly.

Nested constructors count once: a ``ContextVar`` depth counter marks the outermost
construction (``requests.Session`` builds ``urllib3.PoolManager`` objects; ``boto3.resource``
builds a botocore client). Only successful constructions count. Constructor arguments are
never looked at.
"""

from __future__ import annotations

import os
import sys
import time

import wrapt

from leakagent.core import guard
from leakagent.core.tracker import CONSTRUCTION_DEPTH, qualified_name
from leakagent.hooks.callsite import SiteFinder, package_dir

TYPE_CHECKING = False
if TYPE_CHECKING:
    from types import ModuleType
    from typing import Any, Callable

    from leakagent.core.tracker import Site, Tracker
    from leakagent.hooks.catalog import Target

PART = "client-hook"
MIN_WRAPT = (1, 14)


def _version(text: str) -> tuple[int, ...]:
    parts = []
    for piece in text.split(".")[:2]:
        digits = "".join(c for c in piece if c.isdigit())
        parts.append(int(digits or 0))
    return tuple(parts)


if _version(getattr(wrapt, "__version__", "0")) < MIN_WRAPT:
    raise ImportError(
        f"wrapt {getattr(wrapt, '__version__', '?')} is too old "
        f"(leakagent needs {'.'.join(map(str, MIN_WRAPT))} or newer)"
    )

WRAPT_DIR = os.path.dirname(os.path.abspath(wrapt.__file__)) + os.sep

_depth = CONSTRUCTION_DEPTH  # shared with the threading.local hook (nested: not counted)
_off = guard._off  # the parts switched off (a set: looked up without a call)
_clock = time.perf_counter_ns
_applied: dict[str, tuple[Any, str, Any, bool]] = {}
"""target name -> (parent, attribute, original value, attribute was in parent.__dict__)."""

listeners: list[Callable[[str, Site, int, int], None]] = []
"""Called after each counted construction with (kind, site, start_ns, end_ns); used by the
telemetry layer for spans. ``site[:3]`` is (file, line, function); a site reached through
a library has ``site[3]`` (origin) and ``site[4]`` (via). Errors are contained like the
hook's own."""


# -- call sites --------------------------------------------------------------------------
# One finder for every client hook: it skips wrapt and the packages of every patched target,
# so a client that one library builds lazily for another (google-cloud-storage's requests
# session, aiobotocore's aiohttp session) is blamed on the program's line, not the library's.
_finder = SiteFinder((WRAPT_DIR,))
_missing: list[str] = []
"""Packages named by patched targets but not imported yet (looked up again once more modules
are imported: a package never imported costs one ``len(sys.modules)`` per creation)."""
_named: set[str] = set()
_modules_seen = -1  # len(sys.modules) when _missing was last looked up


def _skip_packages(names: tuple[str, ...]) -> None:
    for name in names:
        if name not in _named:
            _named.add(name)
            _missing.append(name)
    _resolve_packages()


def _resolve_packages() -> None:
    global _modules_seen
    _modules_seen = len(sys.modules)
    found = []
    for name in list(_missing):
        directory = package_dir(name)
        if directory is not None:
            found.append(name)
            # also code a library generates at run time, named after itself
            # ("<sqlalchemy generated warned() wrapper for ...create_engine>")
            _finder.add_skip(directory, f"<{name} ")
    if found:  # a race with another thread only adds a prefix twice
        _missing[:] = [name for name in _missing if name not in found]


class _Wrapper(wrapt.FunctionWrapper):  # type: ignore[type-arg]
    """Marks wrappers made by leakagent, so a second patch can tell them apart."""


class ConstructorHook:
    """The wrapt wrapper of one target: counts the outermost successful construction."""

    def __init__(self, target: Target, owner: Any, tracker: Tracker) -> None:
        self.target = target
        self.owner = owner
        self.tracker = tracker
        self.finder = _finder
        self._kinds: dict[type, tuple[str, str | None]] = {}
        _skip_packages(target.packages)

    def _kind_of(self, obj: object) -> tuple[str, str | None]:
        cls = type(obj)
        label = self.target.kind
        if label is None:
            # Labelled by the class itself. Not cached: botocore builds a new class for every
            # client, so a cache would never hit and would keep those classes alive.
            return (qualified_name(cls), None)
        known = self._kinds.get(cls)
        if known is None:
            if cls is self.owner or not self.target.is_class:
                known = (label, None)
            else:  # a subclass defined by the program: its own name, the base noted
                known = (qualified_name(cls), label)
            if len(self._kinds) < 1000:
                self._kinds[cls] = known
        return known

    def __call__(self, wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        depth = _depth.get()
        if depth or PART in _off:
            return wrapped(*args, **kwargs)
        token = _depth.set(depth + 1)
        if not self.target.counts:  # e.g. Elasticsearch.options: nothing new inside
            try:
                return wrapped(*args, **kwargs)
            finally:
                _depth.reset(token)
        timed = bool(listeners)  # the clock is read only for the spans' listeners
        start = _clock() if timed else 0
        try:
            result = wrapped(*args, **kwargs)
        finally:
            _depth.reset(token)
        end = _clock() if timed else 0
        try:
            if guard.FAULTS:
                guard.fault_point(PART)
            obj = instance if self.target.is_class else result
            kind, base = self._kind_of(obj)
            if _missing and len(sys.modules) != _modules_seen:
                _resolve_packages()
            if base is not None and self.target.is_class:  # a program subclass
                site = self.finder.find(0, obj)
            else:
                site = self.finder.find_fast(0)
            self.tracker.record(kind, site, obj, base)
            if timed:
                for listener in listeners:
                    listener(kind, site, start, end)
        except Exception as exc:
            guard.failed(PART, exc)
        return result


def _resolve(module: ModuleType, path: str) -> tuple[Any, str, Any, bool]:
    parent: Any = module
    *parents, attribute = path.split(".")
    for name in parents:
        parent = getattr(parent, name)
    owned = isinstance(parent, type) and attribute in vars(parent)
    if isinstance(parent, type):
        original = vars(parent)[attribute] if owned else getattr(parent, attribute)
    else:
        original = getattr(parent, attribute)
        owned = True
    return parent, attribute, original, owned


def patch(target: Target, module: ModuleType, tracker: Tracker) -> bool:
    """Wrap ``target`` in the already-imported ``module``. True if wrapped now."""
    if target.name in _applied:
        return False
    parent, attribute, original, owned = _resolve(module, target.attribute)
    if isinstance(original, _Wrapper):
        return False
    owner = parent if target.is_class else None
    hook = ConstructorHook(target, owner, tracker)
    wrapper = _Wrapper(original, hook)
    setattr(parent, attribute, wrapper)
    _applied[target.name] = (parent, attribute, original, owned)
    return True


def unpatch(name: str) -> bool:
    """Restore the original attribute of target ``name``. True if it was patched."""
    entry = _applied.pop(name, None)
    if entry is None:
        return False
    parent, attribute, original, owned = entry
    if owned:
        setattr(parent, attribute, original)
    else:
        delattr(parent, attribute)
    return True


def unpatch_all() -> list[str]:
    """Restore every patched target; returns their names."""
    names = list(_applied)
    for name in names:
        unpatch(name)
    return names


def patched() -> list[str]:
    """Names of the targets currently patched."""
    return sorted(_applied)
