"""Post-import hooks: run a function right after a module is imported, or now if it already is.

This is what ``wrapt.register_post_import_hook`` does, without importing wrapt at start-up
(~33 ms here; the agent loads into every process). A finder placed first on ``sys.meta_path``
asks the other finders for the watched module, and wraps the loader it gets so that the hooks
run once the module has executed. The module's ``__loader__`` and ``__spec__.loader`` are the
original loader again before the module's own code runs.

Hooks import what they need (the client hooks import wrapt, a warning imports ``logging``),
so they never run while one of those dependencies is half-imported on the same thread: a
watched module imported *by* the standard library (``collections``, imported by ``functools``,
imported by ``enum``, ``re``, ``json`` or ``logging``) would otherwise run its hooks inside
those imports, where ``import wrapt`` and ``import logging`` fail on the partial modules. While
hooks are pending, the loaders of standard-library, wrapt and leakagent modules are wrapped
too, to count how deep this thread is in such imports; hooks of a module that finished
inside them run as soon as the outermost one has finished. A watched module imported by the
program's own modules still runs its hooks at once (before ``from module import name`` binds).

A hook never breaks the import: its errors are contained (:mod:`leakagent.core.guard`).
"""

from __future__ import annotations

import _thread
import os
import sys

from leakagent.core import guard

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence
    from importlib.machinery import ModuleSpec
    from types import ModuleType
    from typing import Any, Callable

    Hook = Callable[[ModuleType], None]

_hooks: dict[str, list[Hook]] = {}
_in_progress: set[str] = set()
_depth: dict[int, int] = {}
"""Thread id -> how many imports of the hooks' dependencies are executing on that thread."""
_deferred: dict[int, list[ModuleType]] = {}
"""Thread id -> watched modules that finished inside such imports, whose hooks wait."""
_STDLIB_NAMES: frozenset[str] | None = getattr(sys, "stdlib_module_names", None)
_AGENT_PACKAGES = ("wrapt", "leakagent")


_STDLIB_DIR = os.path.dirname(os.__file__) + os.sep


def _is_dependency(fullname: str, spec: ModuleSpec | None = None) -> bool:
    """Might a hook import this module (standard library, wrapt, leakagent)?

    Python 3.9 has no list of the standard library: without ``spec`` every name might be,
    with it the module's origin tells.
    """
    top = fullname.partition(".")[0]
    if top in _AGENT_PACKAGES:
        return True
    if _STDLIB_NAMES is not None:
        return top in _STDLIB_NAMES
    if spec is None:
        return True
    origin = spec.origin or ""
    return origin in ("built-in", "frozen") or (
        origin.startswith(_STDLIB_DIR) and "-packages" not in origin
    )


def _run_hooks(module: ModuleType) -> None:
    for hook in _hooks.pop(module.__name__, ()):
        try:
            hook(module)
        except Exception as exc:
            guard.failed(f"import hook for {module.__name__}", exc)


class _HookedLoader:
    """Delegates to the real loader, then runs the hooks of the module it executed."""

    def __init__(self, loader: Any, dependency: bool) -> None:
        self._loader = loader
        self._dependency = dependency

    def __getattr__(self, name: str) -> Any:
        return getattr(self._loader, name)

    def create_module(self, spec: ModuleSpec) -> ModuleType | None:
        create = getattr(self._loader, "create_module", None)
        return create(spec) if create is not None else None

    def exec_module(self, module: ModuleType) -> None:
        module.__loader__ = self._loader
        spec = getattr(module, "__spec__", None)
        if spec is not None:
            spec.loader = self._loader
        name = module.__name__
        if not self._dependency:
            self._loader.exec_module(module)
            _finished(name, module)
            return
        ident = _thread.get_ident()
        _depth[ident] = _depth.get(ident, 0) + 1
        try:
            self._loader.exec_module(module)
            if name in _hooks:
                _deferred.setdefault(ident, []).append(sys.modules.get(name, module))
        finally:
            depth = _depth.pop(ident) - 1
            if depth:
                _depth[ident] = depth
            else:  # the outermost one (even if it failed): the waiting hooks run now
                for waiting in _deferred.pop(ident, ()):
                    _run_hooks(waiting)


def _finished(name: str, module: ModuleType) -> None:
    """``module`` has executed: run its hooks, or defer them inside a dependency's import."""
    module = sys.modules.get(name, module)
    ident = _thread.get_ident()
    if _depth.get(ident):
        _deferred.setdefault(ident, []).append(module)
    else:
        _run_hooks(module)


class _HookFinder:
    """First entry of ``sys.meta_path``; only acts on watched module names."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None = None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        if not _hooks or fullname in _in_progress:
            return None
        watched = fullname in _hooks
        if not watched and not _is_dependency(fullname):
            return None
        _in_progress.add(fullname)
        try:
            for finder in sys.meta_path:
                if finder is self or not hasattr(finder, "find_spec"):
                    continue
                spec = finder.find_spec(fullname, path, target)
                if spec is not None:
                    break
            else:
                return None
        finally:
            _in_progress.discard(fullname)
        loader = spec.loader
        dependency = _is_dependency(fullname, spec)
        if loader is None or not hasattr(loader, "exec_module") or not (watched or dependency):
            return spec
        spec.loader = _HookedLoader(loader, dependency)  # type: ignore[assignment]
        return spec

    def invalidate_caches(self) -> None:
        pass


_finder = _HookFinder()


def install() -> None:
    """Put the finder first on ``sys.meta_path`` (idempotent)."""
    if not any(isinstance(f, _HookFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _finder)


def uninstall() -> None:
    """Remove the finder; hooks not yet run are forgotten."""
    sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, _HookFinder)]
    _hooks.clear()
    _deferred.clear()


def when_imported(name: str, hook: Hook) -> None:
    """Run ``hook(module)`` once ``name`` is imported; at once if it already is."""
    module = sys.modules.get(name)
    if module is not None:
        try:
            hook(module)
        except Exception as exc:
            guard.failed(f"import hook for {name}", exc)
        return
    install()
    _hooks.setdefault(name, []).append(hook)


def pending() -> list[str]:
    """Names of modules whose hooks have not run yet."""
    return sorted(_hooks)
