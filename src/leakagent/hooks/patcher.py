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

import contextlib
import functools
import importlib._bootstrap
import os
import sys
import time
from types import MethodType

from leakagent.core import guard
from leakagent.core.tracker import CONSTRUCTION_DEPTH, qualified_name
from leakagent.hooks.callsite import SiteFinder, package_dir
from leakagent.hooks.importhook import when_imported

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator
    from importlib.machinery import ModuleSpec
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


class WraptTooOld(ImportError):
    """The installed wrapt predates what the wrappers need."""


def _check_version(text: str) -> None:
    if _version(text) < MIN_WRAPT:
        raise WraptTooOld(
            f"wrapt {text} is too old (leakagent needs {'.'.join(map(str, MIN_WRAPT))} or newer)"
        )


# -- wrapt, as little of it as the wrappers need --------------------------------------------
# ``import wrapt`` (2.2 and newer) imports ``asyncio`` through ``wrapt.synchronization``: ~45
# modules and ~2,700 objects that the garbage collector then walks in every full collection
# for the rest of the program (+4 % instructions per warm boto3 client). The wrappers are
# wrapt's C extension, which needs nothing else of the package (2.5 reads one exception class
# from ``wrapt.exceptions``, a module without imports). So when the program has not imported
# wrapt yet, those two modules are loaded alone, under their own names: a later
# ``import wrapt`` by the program finds them in ``sys.modules`` and uses the very same types,
# so ``isinstance(x, wrapt.FunctionWrapper)`` in other instrumentation still sees ours.
_LEAF_MODULES = ("exceptions",)
"""Pure-Python modules of wrapt without imports that its extension may import at load."""


def _declared_version(package_dir: str) -> str | None:
    """``__version_info__`` as written in wrapt's ``__init__.py``, without executing it."""
    try:
        with open(os.path.join(package_dir, "__init__.py"), encoding="utf-8") as file:
            for line in file:
                if line.startswith("__version_info__"):
                    value = line.partition("=")[2]
                    return ".".join(
                        piece.strip(" '\"") for piece in value.strip(" ()\n").split(",")
                    )
    except OSError:
        return None
    return None


def _load_alone() -> tuple[Any, str] | None:
    """wrapt's C ``FunctionWrapper`` and wrapt's directory, the package not executed.

    None when that cannot be done (no C extension, extensions disabled, an unusual layout);
    then the caller imports wrapt as usual.
    """
    from importlib.machinery import ExtensionFileLoader, PathFinder, SourceFileLoader

    if os.environ.get("WRAPT_DISABLE_EXTENSIONS"):
        return None
    package = PathFinder.find_spec("wrapt")
    if package is None or not package.submodule_search_locations or not package.origin:
        return None
    locations = list(package.submodule_search_locations)
    directory = os.path.dirname(os.path.abspath(package.origin))
    version = _declared_version(directory)
    extension = PathFinder.find_spec("wrapt._wrappers", locations)
    if version is None or extension is None:
        return None
    if not isinstance(extension.loader, ExtensionFileLoader):
        return None
    _check_version(version)
    leaves = []
    for leaf in _LEAF_MODULES:
        spec = PathFinder.find_spec(f"wrapt.{leaf}", locations)
        if spec is not None and spec.name not in sys.modules:
            if not isinstance(spec.loader, SourceFileLoader):
                return None
            leaves.append(spec)
    added: list[str] = []
    with _stand_in_package(package):
        try:
            for spec in leaves:
                _execute(spec, added)
            module = _execute(extension, added)
        except Exception:
            for name in added:
                sys.modules.pop(name, None)
            raise
    when_imported("wrapt", _adopt)
    return module.FunctionWrapper, directory + os.sep


@contextlib.contextmanager
def _stand_in_package(spec: ModuleSpec) -> Iterator[None]:
    """An empty ``wrapt`` in ``sys.modules`` while the extension loads.

    The extension's ``PyImport_ImportModule("wrapt.exceptions")`` also imports the top-level
    package, as any dotted import does, unless it is there already. The stand-in is marked as
    initialising and the package's import lock is held meanwhile, so another thread's
    ``import wrapt`` waits and then imports the real package.
    """
    from importlib.util import module_from_spec

    stand_in = module_from_spec(spec)  # a bare module: its code is not executed
    if stand_in.__spec__ is not None:
        stand_in.__spec__._initializing = True  # type: ignore[attr-defined]
    lock = getattr(importlib._bootstrap, "_ModuleLockManager", None)
    with lock("wrapt") if lock is not None else contextlib.nullcontext():
        sys.modules["wrapt"] = stand_in
        try:
            yield
        finally:
            if sys.modules.get("wrapt") is stand_in:
                del sys.modules["wrapt"]


def _execute(spec: Any, added: list[str]) -> Any:
    from importlib.util import module_from_spec

    module = module_from_spec(spec)
    sys.modules[spec.name] = module
    added.append(spec.name)
    spec.loader.exec_module(module)
    return module


def _adopt(package: ModuleType) -> None:
    """The program imported wrapt: make the modules loaded alone its attributes, as an
    ordinary import would have (``import wrapt.exceptions; wrapt.exceptions.X``)."""
    for name in ("_wrappers", *_LEAF_MODULES):
        module = sys.modules.get(f"wrapt.{name}")
        if module is not None and not hasattr(package, name):
            setattr(package, name, module)


def _load_wrapt() -> tuple[Any, str]:
    """wrapt's ``FunctionWrapper`` and directory: loaded alone if it can be, else imported."""
    alone = None
    if "wrapt" not in sys.modules:
        try:
            alone = _load_alone()
        except WraptTooOld:
            raise
        except Exception:  # an unusual installation: the ordinary import decides
            pass
    if alone is not None:
        return alone
    import wrapt

    _check_version(getattr(wrapt, "__version__", "0"))
    return wrapt.FunctionWrapper, os.path.dirname(os.path.abspath(wrapt.__file__)) + os.sep


FunctionWrapper, WRAPT_DIR = _load_wrapt()

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


class _Wrapper(FunctionWrapper):  # type: ignore[misc,valid-type]
    """Marks wrappers made by leakagent, so a second patch can tell them apart."""


class ConstructorHook:
    """The hook of one target: counts the outermost successful construction."""

    def __init__(self, target: Target, owner: Any, tracker: Tracker) -> None:
        self.target = target
        self.owner = owner
        self.tracker = tracker
        self.finder = _finder
        self._kinds: dict[type, tuple[str, str | None]] = {}
        # the kind of an instance of the patched class itself, read without a method call
        self.owned: tuple[str, str | None] | None = (
            (target.kind, None) if owner is not None and target.kind is not None else None
        )
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
        """The wrapt wrapper (factories, and constructors wrapped by wrapt)."""
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
        self._count(instance if self.target.is_class else result, start, end, 2)
        return result

    def remember(self, frame: Any) -> None:
        """After a construction counted at the program's own ``frame``: let the thread's later
        ones there take ``outermost``'s fast path (the tracker keeps the key from the
        thread's second creation on)."""
        if self.owned is None:
            return
        code = frame.f_code
        offset = frame.f_lasti
        site = self.finder.cached(code, offset)
        if site is not None:
            self.tracker.remember((id(code), offset, self.owner), code, self.owned[0], site)

    def _count(self, obj: Any, start: int, end: int, depth: int) -> None:
        """Count ``obj``; the frame ``depth`` above this one is the constructor's caller
        (past ``__call__``, or past the ``outermost`` of :func:`_init_replacement`; the
        agent's own frames above it are skipped): the search for the site starts there."""
        try:
            if guard.FAULTS:
                guard.fault_point(PART)
            known = self.owned if type(obj) is self.owner else None
            kind, base = known if known is not None else self._kind_of(obj)
            if _missing and len(sys.modules) != _modules_seen:
                _resolve_packages()
            if base is not None and self.target.is_class:  # a program subclass
                site = self.finder.find(depth, obj)
            else:
                site = self.finder.find_fast(depth)
            self.tracker.record(kind, site, obj, base)
            if start:
                for listener in listeners:
                    listener(kind, site, start, end)
        except Exception as exc:
            guard.failed(PART, exc)


def _init_replacement(original: Any, hook: ConstructorHook) -> Any:
    """What a class target's ``__init__`` becomes: a descriptor whose ``__get__`` hands out
    the original, bound, when the construction is nested in a counted one (or the agent is
    switched off), and the counting ``__init__`` below otherwise.

    A nested construction so pays one ``__get__`` call and never passes through a Python
    function with its arguments: ``redis.Redis()`` hands ~30 keywords to its
    ``ConnectionPool``, and passing them through (packed into a dict, copied for the call,
    unpacked again) cost ~12k instructions. wrapt's ``FunctionWrapper`` there (a
    ``BoundFunctionWrapper`` bound on every construction, the hook called with an args tuple
    and a kwargs dict) cost ~5.4k per construction. Read on the class, the attribute is the
    counting ``__init__``, which ``functools.update_wrapper`` gave the original's names,
    annotations and ``__wrapped__``: ``inspect.signature``, ``inspect.getsource`` and
    ``typing.get_type_hints`` see the original, and ``Base.__init__(self, ...)`` counts."""
    depth = _depth
    off = _off
    count = hook._count
    clock = _clock
    bind = MethodType
    getframe = sys._getframe
    patched = hook.owner
    fast = hook.owned is not None  # a target labelled by its class never takes the fast path
    slot = hook.tracker.slot
    record_cell = hook.tracker.record_cell

    # No named parameter, not even ``self``: the keywords go straight to ``kwargs`` without
    # being compared with a parameter name one by one (~70 instructions each), and ``self=``
    # given as a keyword reaches the original as before.
    def __init__(*args: Any, **kwargs: Any) -> None:
        if depth.get() or PART in off:  # nested in a counted construction, or switched off
            return original(*args, **kwargs)  # type: ignore[no-any-return]
        return outermost(*args, **kwargs)  # ``Base.__init__(self)``: rare, one call more

    try:  # names, docstring, annotations, attributes, __wrapped__ (missing ones skipped)
        functools.update_wrapper(__init__, original)
    except (AttributeError, TypeError):
        __init__.__wrapped__ = original  # type: ignore[attr-defined]
    __init__.__leakagent_hook__ = hook  # type: ignore[attr-defined]

    def outermost(*args: Any, **kwargs: Any) -> None:
        # The outermost construction, counted: what ``__get__`` binds (``args[0]`` is the
        # instance), and what ``__init__`` read on the class calls (``self=`` may be a
        # keyword there). An instance of the class itself, made directly by a program frame
        # the thread made one before, is counted in the thread's cell as the
        # ``threading.local`` fast path does (``quick``), or by ``record_cell``: no site
        # search, no ``record``. Through ``__init__`` the frame above is the agent's own,
        # never remembered, so that rare path always takes ``count``.
        token = depth.set(1)
        timed = bool(listeners)
        start = clock() if timed else 0
        try:
            original(*args, **kwargs)
        finally:
            depth.reset(token)
        obj = args[0] if args else kwargs.get("self")
        if timed or not fast or type(obj) is not patched:
            count(obj, start, clock() if timed else 0, 2)
            return
        try:
            frame = getframe(1)
            try:  # the offset first, then the whole key (Tracker.remember)
                cell = slot.cells[frame.f_lasti]
                if cell.code is not frame.f_code or cell.klass is not patched:
                    # the cell keeps the key's code object: an equal id is the same code
                    cell = slot.cells[id(frame.f_code), frame.f_lasti, patched]
            except (AttributeError, KeyError):  # not remembered (yet)
                count(obj, 0, 0, 2)
                hook.remember(frame)
                return
            if cell.count < cell.quick:  # all that record_cell would do
                cell.count += 1
            else:
                record_cell(cell, obj)
        except Exception as exc:
            guard.failed(PART, exc)

    def __get__(self: Any, instance: Any, owner: Any = None) -> Any:
        if instance is None:
            return __init__
        if depth.get() or PART in off:
            return bind(original, instance)
        return bind(outermost, instance)

    def __getattr__(self: Any, name: str) -> Any:  # read raw (``vars(cls)``): the original's
        return getattr(__init__, name)  # names, ``__wrapped__``, ``__leakagent_hook__``

    # a class of its own per target: its ``__get__`` reads the closure, not attributes
    descriptor = type(
        "CountedInit",
        (),
        {
            "__slots__": (),
            "__get__": __get__,
            "__getattr__": __getattr__,
            "__doc__": getattr(original, "__doc__", None),
            "__module__": __name__,
        },
    )
    return descriptor()


def is_ours(value: Any) -> bool:
    """A wrapper this module made (either kind)."""
    return isinstance(value, _Wrapper) or hasattr(value, "__leakagent_hook__")


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
    if is_ours(original):
        return False
    owner = parent if target.is_class else None
    hook = ConstructorHook(target, owner, tracker)
    if target.is_class and target.counts and isinstance(parent, type):
        wrapper = _init_replacement(original, hook)
    else:
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
