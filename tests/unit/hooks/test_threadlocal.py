"""The counting threading.local class: counts everything, changes nothing else."""

from __future__ import annotations

import _thread
import copy
import pickle
import threading
from collections.abc import Iterator

import pytest

from leakagent.core import guard
from leakagent.hooks import threadlocal

Created = list[tuple[type, object]]


@pytest.fixture
def created() -> Iterator[Created]:
    """Patch the real threading module for one test; record what the hook sees."""
    seen: Created = []
    was_patched = threadlocal.is_counting(threading.local)
    if was_patched:  # the suite itself runs under the agent: test a fresh class anyway
        original = threading.local
        threadlocal.unpatch(threading)
    assert threadlocal.patch(threading, lambda cls, obj, frame: seen.append((cls, obj)))
    try:
        yield seen
    finally:
        threadlocal.unpatch(threading)
        if was_patched:
            threading.local = _thread._local = original  # type: ignore[misc]


def test_direct_call_is_counted_as_threading_local(created: Created) -> None:
    local = threading.local()
    assert type(local) is threading.local is _thread._local  # one object, as in plain Python
    assert created == [(threadlocal.RawLocal, local)]


def test_subclass_defined_after_the_patch_is_counted_once_per_instance(created: Created) -> None:
    inits = []

    class Ctx(threading.local):
        def __init__(self, value: int = 0) -> None:
            inits.append(threading.get_ident())
            self.value = value

    ctx = Ctx(7)
    results = []

    def other_thread() -> None:
        results.append(ctx.value)  # __init__ re-runs in this thread

    t = threading.Thread(target=other_thread)
    t.start()
    t.join()
    assert results == [7] and len(inits) == 2  # __init__ re-ran there with the same args
    assert [cls for cls, _ in created] == [Ctx]  # ...but counted once
    assert ctx.value == 7


def test_isinstance_and_issubclass_hold_after(created: Created) -> None:
    class Ctx(threading.local):
        pass

    assert isinstance(threadlocal.RawLocal(), threadlocal.RawLocal)
    assert isinstance(threading.local(), threading.local)
    assert isinstance(Ctx(), threading.local)
    assert issubclass(Ctx, threading.local)
    assert issubclass(Ctx, _thread._local)
    assert not isinstance(object(), threading.local)
    assert isinstance(threading.local, type)


def test_from_threading_import_local_after_the_patch_is_covered(created: Created) -> None:
    from threading import local

    local()
    assert len(created) == 1


def test_copy_pickle_and_repr_of_the_class(created: Created) -> None:
    cls = threading.local
    assert copy.copy(cls) is cls
    assert copy.deepcopy(cls) is cls
    assert pickle.loads(pickle.dumps(cls)) is cls
    assert repr(cls) == repr(threadlocal.RawLocal) == "<class '_thread._local'>"
    assert (cls.__name__, cls.__qualname__, cls.__module__) == ("_local", "_local", "_thread")
    assert type(cls) is type


def test_dynamic_subclasses_work_and_are_counted(created: Created) -> None:
    import types

    class Meta(type):
        pass

    made = [
        type("D", (threading.local,), {}),
        types.new_class("E", (threading.local,), {}),
        Meta("M", (threading.local,), {}),
        type(threading.local)("K", (threading.local,), {}),
    ]

    class S(threading.local):
        __slots__ = ("a", "__dict__")

    for cls in [*made, S]:
        obj = cls()
        obj.a = 1
        assert obj.a == 1 and isinstance(obj, threading.local)
    assert [cls for cls, _ in created] == [*made, S]


def test_init_arguments_are_refused_as_before(created: Created) -> None:
    with pytest.raises(TypeError):
        threading.local(1)


def test_attribute_access_unchanged_for_locals(created: Created) -> None:
    local = threading.local()
    local.x = 1
    seen = []
    t = threading.Thread(target=lambda: seen.append(hasattr(local, "x")))
    t.start()
    t.join()
    assert local.x == 1 and seen == [False]


def test_patch_is_idempotent_and_unpatch_restores(created: Created) -> None:
    cls = threading.local
    assert not threadlocal.patch(threading, lambda cls, obj, frame: None)
    assert threading.local is cls
    assert threadlocal.unpatch(threading)
    assert threading.local is _thread._local is threadlocal.RawLocal
    assert not threadlocal.unpatch(threading)
    assert threadlocal.patch(threading, lambda cls, obj, frame: created.append((cls, obj)))


@pytest.mark.expect_agent_errors
def test_a_failing_hook_is_contained(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(guard, "STRICT", False)
    monkeypatch.setattr(guard, "_off", set())

    def broken(cls: type, obj: object, frame: object) -> None:
        raise RuntimeError("boom")

    original = threading.local
    threadlocal.unpatch(threading)
    threadlocal.patch(threading, broken)
    try:
        local = threading.local()
        local.x = 5
        assert local.x == 5
        assert guard.is_off(threadlocal.PART)

        class Ctx(threading.local):
            pass

        assert isinstance(Ctx(), threading.local)
    finally:
        threadlocal.unpatch(threading)
        if threadlocal.is_counting(original):
            threading.local = _thread._local = original  # type: ignore[misc]


def test_fast_path_counts_a_known_site_without_the_hook() -> None:
    # the hook sees a site once and remembers it; later creations there go to the recorder
    hook_calls: list[int] = []
    recorded: list[tuple[str, object, object, object]] = []
    sites: dict[tuple[int, int, type], tuple[object, str, object, object]] = {}
    busy = [0]

    class Recorder:
        def record(self, kind: str, site: object, obj: object, base: object = None) -> None:
            recorded.append((kind, site, obj, base))

    def hook(cls: type, obj: object, frame: object) -> None:
        hook_calls.append(1)
        code = frame.f_code  # type: ignore[attr-defined]
        sites[(id(code), frame.f_lasti, counter)] = (code, "K", ("f", 1, "g"), None)  # type: ignore[attr-defined]

    fast = threadlocal.FastPath(sites, Recorder(), lambda: busy[0])
    counter = threadlocal.make_counting_local(hook, fast)
    made = []
    for _ in range(5):
        made.append(counter())  # one call site
    assert len(hook_calls) == 1
    assert len(recorded) == 4
    assert all(r[0] == "K" and r[1] == ("f", 1, "g") for r in recorded)
    assert [r[2] for r in recorded] == made[1:]
    busy[0] = 1  # inside a counted client construction: the hook decides (and is called)
    counter()
    assert len(hook_calls) == 2 and len(recorded) == 4
    busy[0] = 0
    counter()  # another call site: the hook again
    assert len(hook_calls) == 3
