"""The tracker core: exact counts, per-thread detection, verdicts, bounded memory."""

from __future__ import annotations

import gc
import threading
from typing import Any

import pytest

from leakagent.core.tracker import CHURN, OVERFLOW_FILE, RETENTION, THREADS_PER_SITE, Tracker


class Thing:
    """A weak-referenceable object standing in for a client."""


SITE = ("/app/service.py", 42, "Service.client")


def events_of(tracker: Tracker) -> list[tuple[str, dict[str, Any]]]:
    events: list[tuple[str, dict[str, Any]]] = []
    tracker.on_suspect = lambda site, event: events.append((event, site))
    return events


def site_of(tracker: Tracker, kind: str = "k") -> dict[str, Any]:
    (site,) = [s for s in tracker.snapshot() if s["kind"] == kind]
    return site


def test_counts_are_exact_under_heavy_concurrency() -> None:
    tracker = Tracker(threshold=10**9)
    barrier = threading.Barrier(16)

    def work(index: int) -> None:
        barrier.wait()
        for n in range(5000):
            tracker.record("k", ("/app/a.py", n % 7, "f"), Thing())

    threads = [threading.Thread(target=work, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    sites = tracker.snapshot()
    assert sum(s["created"] for s in sites) == 80_000
    assert len(sites) == 7
    assert all(s["threads"] == 16 for s in sites)
    assert tracker.totals()["created"] == 80_000
    gc.collect()
    assert tracker.totals()["live"] == 0


def test_one_instance_per_thread_is_never_a_suspect() -> None:
    tracker = Tracker(threshold=1)
    events = events_of(tracker)
    keep = []
    lock = threading.Lock()
    together = threading.Barrier(32)  # a pool: its threads are alive at the same time

    def work() -> None:
        obj = Thing()
        with lock:
            keep.append(obj)
        tracker.record("k", SITE, obj)
        together.wait()

    threads = [threading.Thread(target=work) for _ in range(32)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    site = site_of(tracker)
    assert site["created"] == 32 and site["threads"] == 32 and site["max_per_thread"] == 1
    assert not site["suspect"] and events == []


def test_reused_thread_idents_are_not_one_thread() -> None:
    # Threads started one after another usually get the same ident from the OS.
    tracker = Tracker(threshold=30)
    for _ in range(20):
        t = threading.Thread(target=lambda: tracker.record("k", SITE, Thing()))
        t.start()
        t.join()
    site = site_of(tracker)
    assert site["threads"] == 20 and site["max_per_thread"] == 1 and not site["suspect"]
    assert site["concurrency"] == 1


def test_thread_churn_defeating_a_per_thread_cache_is_a_suspect() -> None:
    # One instance per thread, but a new thread per task: one instance per task.
    tracker = Tracker(threshold=5)
    events = events_of(tracker)
    for _ in range(20):
        t = threading.Thread(target=lambda: tracker.record("k", SITE, Thing()))
        t.start()
        t.join()
    site = site_of(tracker)
    assert site["suspect"] and site["cause"] == "thread_churn" and site["verdict"] == CHURN
    assert [e for e, _ in events] == ["suspect"]
    flagged = events[0][1]  # one creation past the threshold beyond the concurrency
    assert flagged["flagged_after"]["created"] == 5 + flagged["concurrency"]


def test_crossing_the_threshold_makes_one_suspect_event() -> None:
    tracker = Tracker(threshold=5)
    events = events_of(tracker)
    for _ in range(5):
        tracker.record("k", SITE, Thing())
    assert events == []
    for _ in range(20):
        tracker.record("k", SITE, Thing())
    assert [e for e, _ in events] == ["suspect"]
    event, site = events[0]
    assert site["max_per_thread"] == 6 and site["file"] == "/app/service.py" and site["line"] == 42
    assert site["max_thread"] == threading.current_thread().name


def test_churn_when_instances_are_freed() -> None:
    tracker = Tracker(threshold=5)
    events = events_of(tracker)
    for _ in range(50):
        tracker.record("k", SITE, Thing())  # freed at once
    site = site_of(tracker)
    assert site["verdict"] == CHURN and site["live"] == 0 and site["live_peak"] == 1
    assert [e for e, _ in events] == ["suspect"]


def test_retention_when_instances_stay_alive() -> None:
    tracker = Tracker(threshold=5)
    events = events_of(tracker)
    kept = [Thing() for _ in range(50)]
    for obj in kept:
        tracker.record("k", SITE, obj)
    site = site_of(tracker)
    assert site["verdict"] == RETENTION and site["live"] == 50
    # More alive than the threshold at the moment it became a suspect: retention at once,
    # and no second warning.
    assert [(e, s["verdict"]) for e, s in events] == [("suspect", RETENTION)]


def test_churn_that_turns_into_retention_warns_again_once() -> None:
    tracker = Tracker(threshold=5)
    events = events_of(tracker)
    for _ in range(10):
        tracker.record("k", SITE, Thing())
    kept = []
    # once a churn suspect, one instance in 16 is watched: when the sample suggests retention
    # (at the cell's next report, a doubling) every instance is watched again, and retention
    # is told once concurrency + threshold of those stay alive (here by the 55th kept)
    for _ in range(60):
        obj = Thing()
        kept.append(obj)
        tracker.record("k", SITE, obj)
    assert [e for e, _ in events] == ["suspect", "retention"]
    assert events[0][1]["verdict"] == CHURN
    assert site_of(tracker)["verdict"] == RETENTION


def test_a_busy_churn_suspect_watches_fewer_and_still_tells_retention() -> None:
    # Past 1,024 creations per watched one, a churn suspect that keeps nothing watches half
    # as many (one in 64 at most); kept instances still turn it into retention, at the cell's
    # next report (here one doubling later) once they pass concurrency + threshold + 63, and
    # a confirming look at every instance.
    tracker = Tracker(threshold=5)
    events = events_of(tracker)
    strides = []
    for _ in range(70_000):
        tracker.record("k", SITE, Thing())
        (stats,) = tracker._sites.values()
        if not strides or strides[-1][1] != stats.stride:
            strides.append((site_of(tracker)["created"], stats.stride))
    assert [stride for _, stride in strides] == [1, 16, 32, 64]
    assert strides[2][0] > 16 * 1024 and strides[3][0] > 32 * 1024
    assert [e for e, _ in events] == ["suspect"]
    # One watched instance kept alive, every other one dropped, until the cell's next
    # report: the sample reads 64 alive (one reference at one in 64); the peak, which never
    # claims more than is known to be alive, stays at what really was (the kept one and the
    # one being created).
    (cell,) = tracker.slot.cells.values()
    keep = None
    flushed = cell.flushed
    while cell.flushed == flushed:
        watched = len(stats.watches or ())
        obj = Thing()
        tracker.record("k", SITE, obj)
        if keep is None and len(stats.watches or ()) > watched:
            keep = obj
    assert keep is not None and stats.live >= 64
    assert site_of(tracker)["live_peak"] <= 2
    kept = []
    for _ in range(80_000):
        obj = Thing()
        kept.append(obj)
        tracker.record("k", SITE, obj)
        if len(events) == 2:
            break
    assert [e for e, _ in events] == ["suspect", "retention"]
    assert site_of(tracker)["verdict"] == RETENTION
    assert len(kept) <= 70_000 + 5 * (1 + 5)  # the report a doubling later, the look


@pytest.mark.parametrize("threads", [8, 32, 128])
def test_a_pool_in_step_is_churn_not_retention(threads: int) -> None:
    # Each thread holds its one instance while all the others make theirs: the sampled
    # references of a churn suspect (one in 16 per thread) fall on every thread at once, so
    # the sample reads 0 or 16 x threads alive. Only instances watched one by one decide.
    tracker = Tracker(threshold=40)
    events = events_of(tracker)
    barrier = threading.Barrier(threads)
    rounds = 120

    def work() -> None:
        for _ in range(rounds):
            obj = Thing()
            tracker.record("k", SITE, obj)
            barrier.wait()  # all alive at once
            del obj
            barrier.wait()

    pool = [threading.Thread(target=work) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    assert [(e, s["verdict"]) for e, s in events] == [("suspect", CHURN)]
    site = site_of(tracker)
    assert site["created"] == threads * rounds and site["verdict"] == CHURN


def test_a_sample_that_suggests_retention_is_checked_a_bounded_number_of_times() -> None:
    # In-step churn on 16 threads: each look at every instance finds no retention, and the
    # next waits until twice as many were made (the watched levels stay few).
    tracker = Tracker(threshold=40)
    barrier = threading.Barrier(16)
    looks = []

    def work() -> None:
        for _ in range(400):
            obj = Thing()
            tracker.record("k", SITE, obj)
            barrier.wait()
            del obj
            barrier.wait()
            stats = next(iter(tracker._sites.values()))
            looks.append(stats.confirm_from)

    pool = [threading.Thread(target=work) for _ in range(16)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    stats = next(iter(tracker._sites.values()))
    started = {value for value in looks if value > 0}
    assert len(started) <= 8, sorted(started)  # 6,400 creations: a handful of doublings
    assert len(stats.levels) <= 3 and site_of(tracker)["verdict"] == CHURN


def test_objects_without_weakref_support_make_live_a_lower_bound() -> None:
    tracker = Tracker(threshold=100)
    tracker.record("k", SITE, 12345)  # ints do not support weak references
    site = site_of(tracker)
    assert site["created"] == 1 and site["live_exact"] is False


def test_live_reference_cap() -> None:
    tracker = Tracker(threshold=100, max_live_refs=10)
    kept = [Thing() for _ in range(30)]
    for obj in kept:
        tracker.record("k", SITE, obj)
    site = site_of(tracker)
    assert site["created"] == 30 and site["live"] == 10 and not site["live_exact"]
    assert tracker.totals()["watched"] == 10


def test_site_cap_counts_the_rest_in_one_overflow_site() -> None:
    tracker = Tracker(threshold=10**9, max_sites=100)
    for n in range(1000):
        tracker.record("k", ("/app/gen.py", n, "f"), Thing())
    sites = tracker.snapshot()
    assert len(sites) == 101
    overflow = [s for s in sites if s["file"] == OVERFLOW_FILE]
    assert overflow[0]["created"] == 900
    assert tracker.totals()["overflowed"] == 900
    assert sum(s["created"] for s in sites) == 1000


def test_thread_churn_leaves_no_per_thread_state_behind() -> None:
    tracker = Tracker(threshold=10**9)
    for _ in range(3 * THREADS_PER_SITE):
        t = threading.Thread(target=lambda: tracker.record("k", SITE, Thing()))
        t.start()
        t.join()
    gc.collect()
    assert tracker.totals()["threads_alive"] <= 2  # this thread (and maybe one finishing)
    stats = next(iter(tracker._sites.values()))
    assert len(stats.per_thread) <= THREADS_PER_SITE
    assert site_of(tracker)["threads"] == 3 * THREADS_PER_SITE


def test_suspect_per_kind_and_site() -> None:
    tracker = Tracker(threshold=2)
    for _ in range(3):
        tracker.record("a", SITE, Thing())
        tracker.record("b", SITE, Thing())
        tracker.record("a", ("/app/other.py", 1, "g"), Thing())
    suspects = {(s["kind"], s["file"]) for s in tracker.snapshot() if s["suspect"]}
    assert suspects == {("a", SITE[0]), ("b", SITE[0]), ("a", "/app/other.py")}


def test_weakref_callback_during_record_does_not_deadlock() -> None:
    # Objects in reference cycles are freed by the garbage collector, which may run inside
    # record() while the lock is held: the callback must not take the lock.
    tracker = Tracker(threshold=10**9)
    gc.set_threshold(1)
    try:
        for _ in range(2000):
            obj = Thing()
            obj.self = obj  # type: ignore[attr-defined]
            tracker.record("k", SITE, obj)
    finally:
        gc.set_threshold(700, 10, 10)
    del obj
    gc.collect()
    assert site_of(tracker)["live"] == 0


def test_reset_after_fork_clears_counts() -> None:
    tracker = Tracker(threshold=2)
    for _ in range(5):
        tracker.record("k", SITE, Thing())
    tracker.reset_after_fork()
    assert tracker.snapshot() == [] and tracker.totals()["created"] == 0


def test_many_kept_instances_cost_a_bounded_number_of_references() -> None:
    # Past 1,024 live at a site one in 2^k is watched: ~1,024 references per doubling.
    tracker = Tracker(threshold=10**9)
    kept = [Thing() for _ in range(200_000)]
    for obj in kept:
        tracker.record("k", SITE, obj)
    site = site_of(tracker)
    watched = tracker.totals()["watched"]
    assert watched <= 1024 * 10, watched
    assert site["created"] == 200_000 and not site["live_exact"]
    assert 0.8 * 200_000 <= site["live"] <= 1.01 * 200_000, site["live"]
    del kept
    gc.collect()
    assert site_of(tracker)["live"] == 0 and tracker.totals()["watched"] == 0


def test_live_stays_exact_below_the_sampling_level() -> None:
    tracker = Tracker(threshold=10**9)
    kept = [Thing() for _ in range(1000)]
    for obj in kept:
        tracker.record("k", SITE, obj)
    del kept[::2]
    site = site_of(tracker)
    assert site["live"] == 500 and site["live_exact"]


def test_an_ended_threads_cells_are_folded_at_the_next_creation() -> None:
    # not at whatever creation next needs the lock: a pool that ended gives its memory back
    tracker = Tracker(threshold=10**9)
    for _ in range(3):
        tracker.record("k", SITE, Thing())  # this thread's cell, its allowance given
    t = threading.Thread(target=lambda: [tracker.record("k", SITE, Thing()) for _ in range(3)])
    t.start()
    t.join()
    gc.collect()
    assert len(tracker._thread_cells) == 2  # the ended thread's cells, not folded yet
    tracker.record("k", SITE, Thing())
    assert len(tracker._thread_cells) == 1
    assert site_of(tracker)["created"] == 7


def test_quick_lets_a_caller_count_only_what_record_would_not_look_at() -> None:
    tracker = Tracker(threshold=8)
    for _ in range(100):
        tracker.record("k", SITE, Thing())  # churn: a verdict, then one in 16 watched
    (cell,) = tracker.slot.cells.values()
    assert site_of(tracker)["verdict"] == CHURN
    assert 0 < cell.quick - cell.count < 16 and cell.quick <= cell.limit
    while cell.count < cell.quick:
        cell.count += 1  # what the threading.local fast path does
    tracker.record_cell(cell, Thing())  # the one due to be watched
    assert cell.mark == cell.count and site_of(tracker)["created"] == cell.count
    before = Tracker(threshold=8)
    for _ in range(3):
        before.record("k", SITE, Thing())
    (early,) = before.slot.cells.values()
    assert early.quick <= early.count  # before a verdict every creation is recorded


def test_reset_after_fork_keeps_the_slot_and_empties_this_threads_part() -> None:
    tracker = Tracker(threshold=10**9)
    slot = tracker.slot
    tracker.record("k", SITE, Thing())
    tracker.remember((1, 2, Thing), None, "k", SITE)  # refused: the cell made one
    tracker.record("k", SITE, Thing())
    code = compile("pass", "x", "exec")
    tracker.remember((id(code), 0, Thing), code, "k", SITE)
    assert 0 in slot.cells and 2 not in slot.cells  # the offset keeps the cell
    assert slot.cells[0].code is code and slot.cells[0].klass is Thing
    tracker.reset_after_fork()
    assert tracker.slot is slot and not hasattr(slot, "cells")
    tracker.record("k", SITE, Thing())
    assert site_of(tracker)["created"] == 1


def test_a_creation_that_waited_for_the_lock_adds_no_debt(monkeypatch: pytest.MonkeyPatch) -> None:
    # A creation reads the clock before the lock: a thread that waited brings an earlier time
    # than the report before it. That negative interval once added to the bucket, and with a
    # threshold of 1 a per-thread cache (one creation per thread) became a suspect.
    from leakagent.core import tracker as module

    tracker = Tracker(threshold=1)
    times = [100.002, 100.000, 100.001]
    monkeypatch.setattr(module.time, "time", lambda: times.pop(0) if times else 100.004)
    events = events_of(tracker)
    done = threading.Event()
    kept = []

    def one(made: threading.Event) -> None:
        obj = Thing()
        kept.append(obj)
        tracker.record("k", SITE, obj)
        made.set()
        done.wait()  # alive throughout: one creation per thread alive at a time

    threads = []
    for _ in range(3):  # in turn, with the clock above
        made = threading.Event()
        threads.append(threading.Thread(target=one, args=(made,)))
        threads[-1].start()
        made.wait()
    suspects = [s["kind"] for s in tracker.snapshot() if s["suspect"]]
    done.set()
    for t in threads:
        t.join()
    monkeypatch.undo()
    assert events == [] and suspects == [], events
