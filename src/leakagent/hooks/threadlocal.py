"""The special case of ``threading.local``: count every instantiation, change nothing else.

``_thread._local`` is an immutable C type, so the agent puts a real subclass of it in its place,
under both names (``_thread._local`` and ``threading.local``, which are one object in plain
Python). The subclass counts in ``__new__`` (never in ``__init__``, which the C type re-runs in
every thread that touches the object) and is otherwise invisible:

* it is a plain ``type`` (no metaclass, no proxy), so ``type("D", (threading.local,), {})``,
  ``types.new_class``, metaclass calls, ``type(threading.local)(...)`` and
  ``__slots__ = ("a", "__dict__")`` in a subclass behave as without the agent;
* its ``__name__``/``__qualname__``/``__module__`` are the C type's (``_thread._local``), so
  ``repr``, pickling and copying of the class refer to it exactly as before;
* ``type(threading.local()) is threading.local`` holds, as in plain Python.

The price: attribute access on a direct ``threading.local()`` takes the generic path of a
subclass (a few ns more than the exact C type's shortcut; ``docs/performance.md``), and a local
made before the patch (only possible in a ``.pth`` file, which runs before sitecustomize) is
not an instance of the new class.

This module does not use wrapt on purpose: ``import wrapt`` costs ~33 ms here and the class
is installed in every process at start-up (see ``docs/design.md``).

Where the package's optional C extension was built (``_countnew.c``), the class's ``__new__`` is
its ``CountingNew``: the same steps as the Python ``__new__`` below, without a Python frame per
creation, which on CPython 3.13 alone makes 10 threads creating locals 1.45x slower
(``docs/performance.md``). The Python one stays the reference and the fallback
(``LEAKAGENT_NATIVE=0``, no compiler at install time, a free-threaded build).
"""

from __future__ import annotations

import _thread
import sys

from leakagent.core import guard
from leakagent.core.tracker import Cell

TYPE_CHECKING = False
if TYPE_CHECKING:
    from types import FrameType, ModuleType
    from typing import Any, Callable

    Hook = Callable[[type, object, FrameType], None]

RawLocal: type = _thread._local
PART = "local-hook"
_MARK = "__leakagent_counting__"


class FastPath:
    """What ``__new__`` needs to count a creation at a known site without calling the hook:
    the tracker's per-thread slot, whose ``cells`` dict maps ``offset`` (the cell keeping its
    code and class) or ``(id(code), offset, class)`` to the thread's cell at a site the hook
    has seen the program make directly (the tracker's ``remember``); the owner of
    ``record_cell(cell, obj)``; and the "inside a counted client construction" test. While
    the cell's ``quick`` allows it, ``__new__`` counts in the cell itself: no Python call, no
    stack walk (``docs/performance.md``)."""

    __slots__ = ("busy", "recorder", "slot")

    def __init__(self, slot: Any, recorder: Any, busy: Callable[[], int]) -> None:
        self.slot = slot
        self.recorder = recorder
        self.busy = busy


def native_new() -> Any:
    """The C extension's ``CountingNew`` type, or None where it was not built or must not be
    used: a free-threaded build, whose GIL it would switch back on (and whose counting
    without the GIL neither fast path supports)."""
    gil_enabled = getattr(sys, "_is_gil_enabled", None)  # 3.13+ (sysconfig costs ~2 ms)
    if gil_enabled is not None and not gil_enabled():
        return None
    try:
        from leakagent.hooks import _countnew  # type: ignore[attr-defined]
    except ImportError:
        return None
    return _countnew.CountingNew


def make_counting_local(hook: Hook, fast: FastPath | None = None, native: bool = True) -> type:
    """A subclass of the C type that calls ``hook(cls, obj, frame)`` for each new instance.

    ``cls`` is :data:`RawLocal` for ``threading.local()`` itself (the kind the tracker knows as
    ``threading.local``), the user's class for a subclass; ``frame`` is the creating frame.
    With ``fast``, a creation at a key of the thread's ``fast.slot.cells`` is counted in that
    cell, or by ``fast.recorder.record_cell`` (the hook has the tracker fill the keys, by
    ``remember``). With ``native``, the C extension's ``__new__`` does it where it was built.
    """
    raw_new: Any = RawLocal.__new__
    getframe = sys._getframe
    if fast is None:
        slot: Any = RawLocal()  # never has cells: every creation goes to the hook
        record_cell: Any = None
        busy: Callable[[], int] = int
    else:
        slot, record_cell, busy = fast.slot, fast.recorder.record_cell, fast.busy

    class _local(RawLocal):  # type: ignore[misc]
        __slots__ = ()  # no __dict__/__weakref__ of its own: a subclass may add them

        def __new__(cls, *args: Any, **kwargs: Any) -> Any:
            # not **{} when there are none: _thread._local keeps its keyword dict (+64 B each)
            obj = raw_new(cls, *args, **kwargs) if args or kwargs else raw_new(cls)
            try:
                try:
                    frame = getframe(1)
                except ValueError:  # made from C with no Python frame: no site to name
                    return obj
                try:  # the offset first, then the whole key (Tracker.remember)
                    cell = slot.cells[frame.f_lasti]
                    if cell.code is not frame.f_code or cell.klass is not cls:
                        # the cell keeps the key's code object: an equal id is the same code
                        cell = slot.cells[id(frame.f_code), frame.f_lasti, cls]
                except (AttributeError, KeyError):  # the thread's first creation, a new site
                    hook(RawLocal if cls is counter else cls, obj, frame)
                else:
                    if busy():
                        hook(RawLocal if cls is counter else cls, obj, frame)
                    elif cell.count < cell.quick:  # all that record_cell would do
                        cell.count += 1
                    else:
                        record_cell(cell, obj)
            except Exception as exc:
                _switch_off(exc)
            return obj

    def _uncounted(cls: type, *args: Any, **kwargs: Any) -> Any:
        return raw_new(cls, *args, **kwargs) if args or kwargs else raw_new(cls)

    def _switch_off(exc: BaseException) -> None:  # a contained error, in either __new__
        setattr(counter, "__new__", staticmethod(_uncounted))  # noqa: B010 (switched off)
        guard.failed(PART, exc)

    counter = _local
    made_in_c = native_new() if native else None
    if made_in_c is not None:
        setattr(  # noqa: B010 (the class attribute that slot_tp_new calls)
            counter,
            "__new__",
            staticmethod(
                made_in_c(RawLocal, counter, slot, busy, record_cell, hook, _switch_off, Cell)
            ),
        )
    del counter.__slots__  # the class's namespace looks like the C type's
    counter.__module__ = RawLocal.__module__
    counter.__qualname__ = RawLocal.__qualname__
    counter.__doc__ = RawLocal.__doc__
    setattr(counter, _MARK, True)
    return counter


def is_counting(cls: object) -> bool:
    """True for a class made by :func:`make_counting_local` (not for its subclasses)."""
    return isinstance(cls, type) and _MARK in cls.__dict__


def uses_native(cls: object) -> bool:
    """True if ``cls`` (a counting class) counts in the C extension's ``__new__``."""
    made_in_c = native_new()
    new = cls.__dict__.get("__new__") if isinstance(cls, type) else None
    return made_in_c is not None and isinstance(getattr(new, "__func__", None), made_in_c)


def patch(
    threading: ModuleType, hook: Hook, fast: FastPath | None = None, native: bool = True
) -> bool:
    """Put a counting class in place of ``_thread._local`` and ``threading.local``.

    Idempotent; True if patched now. Only a ``threading.local`` that is still the C type is
    replaced (gevent's or eventlet's own ``local`` is left alone).
    """
    if is_counting(threading.__dict__.get("local")) or is_counting(_thread.__dict__.get("_local")):
        return False
    counter = make_counting_local(hook, fast, native)
    if threading.__dict__.get("local") is RawLocal:
        threading.local = counter  # type: ignore[attr-defined]
    if _thread.__dict__.get("_local") is RawLocal:
        setattr(_thread, "_local", counter)  # noqa: B010 (a module attribute typeshed fixes)
    return True


def unpatch(threading: ModuleType) -> bool:
    """Put the C type back under both names. True if it was patched."""
    patched = False
    if is_counting(threading.__dict__.get("local")):
        threading.local = RawLocal  # type: ignore[attr-defined]
        patched = True
    if is_counting(_thread.__dict__.get("_local")):
        setattr(_thread, "_local", RawLocal)  # noqa: B010
        patched = True
    return patched
