"""Tracker.checkpoint/since (the pytest plugin's per-test scope) and live_counts."""

from __future__ import annotations

import threading

from leakagent.core.tracker import Tracker

SITE = ("/app/a.py", 3, "make")
OTHER = ("/app/b.py", 9, "other")


class _Obj:
    pass


def test_since_counts_only_the_interval_per_thread() -> None:
    tracker = Tracker(threshold=1000)
    before = [_Obj() for _ in range(30)]
    for obj in before:
        tracker.record("lib.Client", SITE, obj)
    checkpoint = tracker.checkpoint()
    assert tracker.since(checkpoint, 5) == []
    during = [_Obj() for _ in range(7)]
    for obj in during:
        tracker.record("lib.Client", SITE, obj)
    for _ in range(4):
        tracker.record("threading.local", OTHER, _Obj())  # freed at once
    found = tracker.since(checkpoint, 5)
    assert len(found) == 1
    site = found[0]
    assert (site["kind"], site["file"], site["line"]) == ("lib.Client", *SITE[:2])
    assert site["created"] == 7
    assert site["max_per_thread"] == 7
    assert site["threads"] == 1
    assert site["live"] == 7
    assert site["verdict"] == "retention"
    assert tracker.since(checkpoint, 7) == []


def test_since_counts_creations_beyond_one_per_thread() -> None:
    tracker = Tracker(threshold=1000)
    checkpoint = tracker.checkpoint()

    def work() -> None:
        for _ in range(4):
            tracker.record("lib.Client", SITE, _Obj())

    threads = [threading.Thread(target=work) for _ in range(5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # 20 in all, 4 per thread: 15 beyond one per thread, however they are spread
    assert tracker.since(checkpoint, 16) == []
    found = tracker.since(checkpoint, 15)
    assert found[0]["threads"] == 5 and found[0]["max_per_thread"] == 4
    assert found[0]["excess"] == 15
    assert found[0]["verdict"] == "churn"


def test_since_one_per_thread_is_never_found() -> None:
    tracker = Tracker(threshold=1000)
    checkpoint = tracker.checkpoint()
    together = threading.Barrier(8)

    def work() -> None:
        tracker.record("lib.Client", SITE, _Obj())
        together.wait()

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert tracker.since(checkpoint, 1) == []


def test_live_counts() -> None:
    tracker = Tracker(threshold=2)
    kept = [_Obj() for _ in range(3)]
    for obj in kept:
        tracker.record("lib.Client", SITE, obj)
    tracker.record("lib.Client", OTHER, _Obj())
    counts = tracker.live_counts()
    assert counts[("lib.Client", *SITE)] == (3, 3, True, "retention")
    assert counts[("lib.Client", *OTHER)] == (1, 0, False, None)
