"""Targets chosen by the user: ``LEAKAGENT_TARGETS``, ``--target``, ``leakagent.track()``,
and built-ins turned off with ``LEAKAGENT_DISABLED_TARGETS``.

A spec is ``module:attribute`` (``pkg.clients:ApiClient``, ``pkg.factory:make_client``,
``pkg.mod:Outer.Client``). Whether the attribute is a class or a factory is only known once the
module is imported: a class gets its ``__init__`` wrapped (subclasses counted under their own
name), a class whose ``__init__`` cannot be patched (a C type) and any other callable get the
attribute itself wrapped (the returned object is counted). Nothing is imported early: a spec
waits for its module to be imported, like the catalog.

Imported at start-up by the runtime: keep it light (no wrapt, no importlib.util).
"""

from __future__ import annotations

import sys

from leakagent.core.targetspec import DISABLED_ENV, Spec
from leakagent.hooks.catalog import CATALOG, Target

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable
    from types import ModuleType
    from typing import Optional

_HEAPTYPE = 1 << 9
_IMMUTABLETYPE = 1 << 8  # Python 3.10+


def check_disabled(
    names: Iterable[str], source: str = DISABLED_ENV
) -> tuple[tuple[str, ...], list[str]]:
    """Catalog names to turn off (``*``: all of them), and a problem per unknown name."""
    names = tuple(names)
    if "*" in names:
        return ("*",), []
    known = {target.name for target in CATALOG}
    problems = [
        f"{source}: {name!r} is not a built-in target name (see docs/targets.md); ignored"
        for name in names
        if name not in known
    ]
    return tuple(n for n in names if n in known), problems


def select(catalog: Iterable[Target], disabled: Iterable[str]) -> list[Target]:
    """The catalog entries to patch: enabled and not disabled by name (``*``: none)."""
    off = set(disabled)
    if "*" in off:
        return []
    return [t for t in catalog if t.enabled and t.name not in off]


def _is_immutable(cls: type) -> bool:
    flags = cls.__flags__
    return not flags & _HEAPTYPE or bool(flags & _IMMUTABLETYPE)


def target_for(spec: Spec, module: ModuleType) -> Target:
    """The concrete target of ``spec`` in its imported ``module``; LookupError if unusable.

    No package is skipped to find the call site: the direct caller of the class or factory is
    the site (beyond leakagent, wrapt, the standard library and the built-in libraries). A
    package skipped for one target is skipped for every client hook, and a program installed
    under site-packages would otherwise lose every call site of its own.
    """
    obj: object = module
    for part in spec.attribute.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise LookupError(
                f"target {spec.text!r}: {spec.module} has no attribute {spec.attribute!r}; "
                "not tracked"
            ) from None
    packages: tuple[str, ...] = ()  # see the docstring
    label = f"{spec.module}.{spec.attribute}"
    if spec.attribute.endswith(".__init__"):
        return Target(
            spec.text,
            spec.module,
            spec.attribute,
            kind=label[: -len(".__init__")],
            packages=packages,
        )
    if isinstance(obj, type):
        if _is_immutable(obj):  # a C type: wrap the name, count what the call returns
            return Target(spec.text, spec.module, spec.attribute, kind=label, packages=packages)
        return Target(
            spec.text, spec.module, spec.attribute + ".__init__", kind=label, packages=packages
        )
    if not callable(obj):
        raise LookupError(
            f"target {spec.text!r}: {spec.attribute} is a {type(obj).__name__}, "
            "neither a class nor a function; not tracked"
        )
    return Target(spec.text, spec.module, spec.attribute, kind=None, packages=packages)


def never_imported_problem(spec: Spec) -> Optional[str]:
    """At exit, for a spec whose module was never imported: a warning if it does not exist.

    A module that exists but was not imported by this process is normal (the variable is
    inherited by every Python process of a container) and says nothing.
    """
    top = spec.module.partition(".")[0]
    if top in sys.modules:
        return None
    import importlib.util  # only at exit, only for user targets left waiting

    try:
        found = importlib.util.find_spec(top) is not None
    except (ImportError, ValueError):
        found = False
    if found:
        return None
    return (
        f"target {spec.text!r}: no module named {top!r} in this interpreter; nothing was "
        "tracked (a typo?)"
    )
