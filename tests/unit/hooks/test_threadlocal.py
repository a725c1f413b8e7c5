"""The threading.local proxy: counts everything, changes nothing else."""

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
    was_patched = type(threading.local) is threadlocal.LocalProxy
    if was_patched:  # the suite itself runs under the agent: test a fresh proxy anyway
        original = threading.local
        threadlocal.unpatch(threading)
    assert threadlocal.patch(threading, lambda cls, obj: seen.append((cls, obj)))
    try:
        yield seen
    finally:
        threadlocal.unpatch(threading)
        if was_patched:
            threading.local = original  # type: ignore[misc]


def test_direct_call_builds_the_exact_c_type_and_counts(created: Created) -> None:
    local = threading.local()
    assert type(local) is _thread._local
    assert created == [(_thread._local, local)]


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


def test_isinstance_and_issubclass_hold_before_and_after(created: Created) -> None:
    before = _thread._local()  # stands for a local made before the patch

    class Ctx(threading.local):
        pass

    assert isinstance(before, threading.local)
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
    proxy = threading.local
    assert copy.copy(proxy) is proxy
    assert copy.deepcopy(proxy) is proxy
    assert pickle.loads(pickle.dumps(proxy)) is proxy
    assert repr(proxy) == repr(_thread._local)
    assert proxy.__name__ == "_local"


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
    proxy = threading.local
    assert not threadlocal.patch(threading, lambda cls, obj: None)
    assert threading.local is proxy
    assert threadlocal.unpatch(threading)
    assert threading.local is _thread._local
    assert not threadlocal.unpatch(threading)
    assert threadlocal.patch(threading, lambda cls, obj: created.append((cls, obj)))


@pytest.mark.expect_agent_errors
def test_a_failing_hook_is_contained(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(guard, "STRICT", False)
    monkeypatch.setattr(guard, "_off", set())

    def broken(cls: type, obj: object) -> None:
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
        if type(original) is threadlocal.LocalProxy:
            threading.local = original  # type: ignore[misc]
