"""The counting threading.local class: counts everything, changes nothing else."""

from __future__ import annotations

import _thread
import copy
import pickle
import threading
from collections.abc import Iterator
from types import FrameType

import pytest

from leakagent.core import guard
from leakagent.core.tracker import Tracker
from leakagent.hooks import threadlocal
from tests.helpers import IN_CI

Created = list[tuple[type, object]]
NATIVE = threadlocal.native_new()


@pytest.fixture(autouse=True, params=["c", "python"])
def fast_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every test here runs with both ``__new__`` implementations: the C extension's (where it
    was built; in CI it must be) and the Python one, the reference and the fallback."""
    if request.param == "python":
        monkeypatch.setattr(threadlocal, "native_new", lambda: None)
    elif NATIVE is None:
        if IN_CI:
            pytest.fail("the C fast path (leakagent.hooks._countnew) was not built")
        pytest.skip("the C fast path was not built here (no compiler at install time)")
    return str(request.param)


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
        __slots__ = ("__dict__", "a")

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


def test_fast_path_counts_a_known_site_in_the_threads_cell() -> None:
    # the hook sees a site's first two creations (the tracker remembers a key from the
    # second); later ones are counted by __new__ in the thread's cell, or by record_cell when
    # the tracker is due
    tracker = Tracker(threshold=8)
    hook_calls: list[int] = []
    cell_calls: list[int] = []
    busy = [0]
    site = ("f.py", 1, "g")

    class Recorder:
        def record_cell(self, cell: object, obj: object) -> None:
            cell_calls.append(1)
            tracker.record_cell(cell, obj)  # type: ignore[arg-type]

    def hook(cls: type, obj: object, frame: FrameType) -> None:
        hook_calls.append(1)
        tracker.record("K", site, obj)
        code = frame.f_code
        tracker.remember((id(code), frame.f_lasti, counter), code, "K", site)

    fast = threadlocal.FastPath(tracker.slot, Recorder(), lambda: busy[0])
    counter = threadlocal.make_counting_local(hook, fast)
    for _ in range(1000):
        counter()  # one call site, dropped at once: churn
    assert len(hook_calls) == 2
    (stats,) = tracker.snapshot()
    assert stats["created"] == 1000 and stats["suspect"] and stats["verdict"] == "churn"
    # after the verdict one in 16 is watched: most creations never called the tracker
    assert 1000 // 16 <= len(cell_calls) < 200
    busy[0] = 1  # inside a counted client construction: the hook decides (and is called)
    counter()
    assert len(hook_calls) == 3
    busy[0] = 0
    counter()  # another call site: the hook again
    assert len(hook_calls) == 4
    assert tracker.snapshot()[0]["created"] == 1000 + 2


def test_fast_path_keeps_exact_counts_on_many_threads() -> None:
    tracker = Tracker(threshold=8)
    site = ("f.py", 1, "g")

    def hook(cls: type, obj: object, frame: FrameType) -> None:
        tracker.record("K", site, obj)
        code = frame.f_code
        tracker.remember((id(code), frame.f_lasti, counter), code, "K", site)

    fast = threadlocal.FastPath(tracker.slot, tracker, int)
    counter = threadlocal.make_counting_local(hook, fast)
    start = threading.Barrier(16)

    def work() -> None:
        start.wait()
        for _ in range(5000):
            counter()

    threads = [threading.Thread(target=work) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    (stats,) = tracker.snapshot()
    assert stats["created"] == 16 * 5000
    assert stats["threads"] == 16 and stats["max_per_thread"] == 5000


def test_fast_path_tells_apart_sites_at_the_same_offset() -> None:
    # The fast path looks a creation up by its bytecode offset first. Two functions of the
    # same shape create at the same offset, and one of them also makes a subclass there: the
    # cell at the offset is checked by its code and class, the others are kept under the
    # whole key, and each site keeps its own exact count without calling the hook again.
    tracker = Tracker(threshold=10**9)
    hook_calls: list[str] = []

    def hook(cls: type, obj: object, frame: FrameType) -> None:
        code = frame.f_code
        key_cls = counter if cls is threadlocal.RawLocal else cls
        kind = key_cls.__name__
        hook_calls.append(f"{code.co_name} {kind}")
        site = ("f.py", code.co_firstlineno, code.co_name)
        tracker.record(kind, site, obj)
        tracker.remember((id(code), frame.f_lasti, key_cls), code, kind, site)

    fast = threadlocal.FastPath(tracker.slot, tracker, int)
    counter = threadlocal.make_counting_local(hook, fast)

    class Sub(counter):  # type: ignore[valid-type,misc]
        pass

    def one(cls: type) -> object:
        return cls()

    def two(cls: type) -> object:
        return cls()

    for _ in range(300):
        one(counter)
        two(counter)
        one(Sub)
    created = {(s["function"], s["kind"]): s["created"] for s in tracker.snapshot()}
    assert created == {("one", "_local"): 300, ("two", "_local"): 300, ("one", "Sub"): 300}
    assert sorted(hook_calls) == ["one Sub"] * 2 + ["one _local"] * 2 + ["two _local"] * 2
    offsets = [key for key in tracker.slot.cells if isinstance(key, int)]
    assert len(offsets) == 1  # one cell under the offset, the other two under the tuple
    assert sum(len(key) == 3 for key in tracker.slot.cells if isinstance(key, tuple)) == 2


def test_the_chosen_new_is_the_one_in_use(fast_path: str) -> None:
    counter = threadlocal.make_counting_local(lambda cls, obj, frame: None)
    assert threadlocal.uses_native(counter) is (fast_path == "c")
    assert not threadlocal.uses_native(threadlocal.make_counting_local(lambda *a: None, None, False))
    if fast_path == "c":  # what introspection reads of the C __new__ is the C type's own
        new, raw = counter.__new__, threadlocal.RawLocal.__new__
        for name in ("__name__", "__qualname__", "__doc__", "__self__"):
            assert getattr(new, name) == getattr(raw, name), name
        assert repr(new) == repr(raw)


@pytest.mark.expect_agent_errors
@pytest.mark.parametrize("broken", ["busy", "record_cell", "cells"])
def test_a_failure_on_the_fast_path_is_contained(
    broken: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # what the tracker's side of the fast path raises never reaches the program: counting
    # switches off (said once), the object is made and returned as without the agent
    monkeypatch.setattr(guard, "STRICT", False)
    monkeypatch.setattr(guard, "_off", set())
    tracker = Tracker(threshold=8)
    site = ("f.py", 1, "g")

    class Boom(Exception):
        pass

    def fail(*args: object) -> int:
        raise Boom(broken)

    class Slot:  # cells that cannot be looked up
        @property
        def cells(self) -> object:
            raise Boom("cells")

    def hook(cls: type, obj: object, frame: FrameType) -> None:
        tracker.record("K", site, obj)
        code = frame.f_code
        tracker.remember((id(code), frame.f_lasti, counter), code, "K", site)

    class Recorder:
        record_cell = staticmethod(fail if broken == "record_cell" else tracker.record_cell)

    fast = threadlocal.FastPath(
        Slot() if broken == "cells" else tracker.slot,
        Recorder(),
        fail if broken == "busy" else int,
    )
    counter = threadlocal.make_counting_local(hook, fast)
    made = [counter() for _ in range(200)]
    assert all(type(obj) is counter for obj in made)
    assert guard.is_off(threadlocal.PART)
    made[0].x = 1
    assert made[0].x == 1
    assert type(counter()) is counter  # and after: uncounted


def test_keyword_arguments_reach_init_in_every_thread() -> None:
    tracker = Tracker(threshold=8)
    seen: list[tuple[int, str]] = []

    def hook(cls: type, obj: object, frame: FrameType) -> None:
        tracker.record("K", ("f.py", 1, "g"), obj)

    counter = threadlocal.make_counting_local(hook, threadlocal.FastPath(tracker.slot, tracker, int))

    class Ctx(counter):  # type: ignore[valid-type,misc]
        def __init__(self, a: int, *, b: str = "") -> None:
            seen.append((a, b))
            self.a, self.b = a, b

    ctx = Ctx(1, b="x")
    thread = threading.Thread(target=lambda: seen.append((ctx.a, ctx.b)))
    thread.start()
    thread.join()
    assert seen == [(1, "x"), (1, "x"), (1, "x")]  # __init__ there again, then the read
    with pytest.raises(TypeError, match="not supported"):
        counter(1)
    with pytest.raises(TypeError, match="not a subtype"):
        counter.__new__(int)
    with pytest.raises(TypeError):
        counter.__new__()


def test_fast_path_counts_with_cells_that_are_not_a_plain_dict() -> None:
    # the C fast path reads a plain dict directly and anything else by subscript, as the
    # Python one does: the counts are the same either way
    tracker = Tracker(threshold=10**9)
    site = ("f.py", 1, "g")
    hook_calls: list[int] = []

    class Cells(dict):  # type: ignore[type-arg]
        pass

    class Slot:
        @property
        def cells(self) -> object:
            return Cells(tracker.slot.cells)

    def hook(cls: type, obj: object, frame: FrameType) -> None:
        hook_calls.append(1)
        tracker.record("K", site, obj)
        code = frame.f_code
        tracker.remember((id(code), frame.f_lasti, counter), code, "K", site)

    counter = threadlocal.make_counting_local(hook, threadlocal.FastPath(Slot(), tracker, int))
    for _ in range(500):
        counter()
    assert len(hook_calls) == 2
    assert tracker.snapshot()[0]["created"] == 500


def test_a_local_made_with_no_python_frame_is_left_uncounted_and_counting_goes_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # a thread started on the class itself makes one from C, with no Python frame to name a
    # site: that one is not counted, and nothing is switched off for the others
    monkeypatch.setattr(guard, "STRICT", False)
    monkeypatch.setattr(guard, "_off", set())
    seen: list[type] = []
    counter = threadlocal.make_counting_local(lambda cls, obj, frame: seen.append(cls))
    made = threading.Event()

    class Made(counter):  # type: ignore[valid-type,misc]
        def __init__(self) -> None:
            made.set()

    _thread.start_new_thread(Made, ())  # the new thread calls Made() from C
    assert made.wait(10)
    counter()
    assert seen == [threadlocal.RawLocal]
    assert not guard.is_off(threadlocal.PART)


@pytest.mark.expect_agent_errors
def test_a_fast_path_failure_raises_in_strict_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    # LEAKAGENT_STRICT=1 (the suite's own setting) makes a contained error raise, from either
    # __new__, so that a bug on the fast path fails a test instead of hiding
    monkeypatch.setattr(guard, "STRICT", True)
    monkeypatch.setattr(guard, "_off", set())
    tracker = Tracker(threshold=8)

    def hook(cls: type, obj: object, frame: FrameType) -> None:
        tracker.record("K", ("f.py", 1, "g"), obj)
        code = frame.f_code
        tracker.remember((id(code), frame.f_lasti, counter), code, "K", ("f.py", 1, "g"))

    def busy() -> int:
        raise LookupError("busy")

    counter = threadlocal.make_counting_local(hook, threadlocal.FastPath(tracker.slot, tracker, busy))
    with pytest.raises(LookupError, match="busy"):
        for _ in range(3):  # the third one reaches the busy test
            counter()
    assert guard.is_off(threadlocal.PART)
