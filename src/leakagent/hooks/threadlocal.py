"""The special case of ``threading.local``: count every instantiation, change nothing else.

``_thread._local`` is an immutable C type, so the attribute ``threading.local`` is replaced by
a :class:`LocalProxy`:

* a direct call ``threading.local()`` builds the exact C type (attribute access stays as fast
  as before) and counts it;
* a class statement ``class Ctx(threading.local)`` gets, through ``__mro_entries__``, a counting
  subclass of the C type as its base, so subclass instances are counted in ``__new__`` (never
  in ``__init__``, which the C type re-runs in every thread that touches the object);
* ``isinstance``/``issubclass`` delegate to the C type, so objects made before the patch still
  match; copying returns the proxy itself and pickling refers to ``threading.local``.

This module does not use wrapt on purpose: ``import wrapt`` costs ~33 ms here and the proxy
is installed in every process at start-up (see ``docs/design.md``).
"""

from __future__ import annotations

import _thread

from leakagent.core import guard

TYPE_CHECKING = False
if TYPE_CHECKING:
    from types import ModuleType
    from typing import Any, Callable

    Hook = Callable[[type, object], None]

RawLocal: type = _thread._local
PART = "local-hook"


def _make_counting_base(hook: Hook) -> type:
    class local(RawLocal):  # type: ignore[misc]
        """Base given to subclasses of ``threading.local`` defined after the agent loaded."""

        def __new__(cls, *args: Any, **kwargs: Any) -> Any:
            obj = (
                RawLocal.__new__(cls, *args, **kwargs) if kwargs else RawLocal.__new__(cls, *args)
            )
            if not guard.is_off(PART):
                try:
                    hook(cls, obj)
                except Exception as exc:
                    guard.failed(PART, exc)
            return obj

    local.__module__ = "threading"
    return local


class LocalProxy:
    """Stands in for ``threading.local``; see the module docstring."""

    __slots__ = ("__wrapped__", "_counting_base", "_hook")
    _hook: Hook | None

    def __init__(self, wrapped: type, hook: Hook) -> None:
        self.__wrapped__ = wrapped
        self._hook = hook
        self._counting_base = _make_counting_base(hook)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        # not **{} when there are none: _thread._local keeps its keyword dict (+64 B each)
        obj = self.__wrapped__(*args, **kwargs) if kwargs else self.__wrapped__(*args)
        hook = self._hook
        if hook is not None:
            try:
                hook(self.__wrapped__, obj)
            except Exception as exc:
                self._hook = None  # switched off
                guard.failed(PART, exc)
        return obj

    def __mro_entries__(self, bases: tuple[Any, ...]) -> tuple[type, ...]:
        return (self._counting_base,)

    def __instancecheck__(self, obj: object) -> bool:
        return isinstance(obj, self.__wrapped__)

    def __subclasscheck__(self, cls: type) -> bool:
        return issubclass(cls, self.__wrapped__)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.__wrapped__, name)

    @property  # type: ignore[misc]
    def __class__(self) -> type:  # so isinstance(threading.local, type) stays True
        return type(self.__wrapped__)

    @property
    def __module__(self) -> str:  # type: ignore[override]
        return "threading"

    def __repr__(self) -> str:
        return repr(self.__wrapped__)

    def __copy__(self) -> LocalProxy:
        return self

    def __deepcopy__(self, memo: object) -> LocalProxy:
        return self

    def __reduce_ex__(self, protocol: object) -> str:
        return "local"


def patch(threading: ModuleType, hook: Hook) -> bool:
    """Replace ``threading.local`` with a counting proxy. Idempotent; True if patched now."""
    current = threading.local
    if type(current) is LocalProxy:
        return False
    threading.local = LocalProxy(current, hook)  # type: ignore[attr-defined]
    return True


def unpatch(threading: ModuleType) -> bool:
    """Put the original ``threading.local`` back. True if it was patched."""
    current = threading.__dict__.get("local")
    if type(current) is LocalProxy:
        threading.local = current.__wrapped__  # type: ignore[attr-defined]
        return True
    return False
