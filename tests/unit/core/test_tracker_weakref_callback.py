"""Regression: watching exact ``_thread._local`` objects must not crash the interpreter.

CPython's ``local_dealloc`` runs the weakref callbacks of a dying ``_thread._local`` *before*
untracking it from the garbage collector (so in 3.11 and in current sources). A Python-level
callback executes bytecode there, so another thread can take the GIL and run a collection
that finds an object with refcount 0 still tracked: a segfault. A plain-CPython reproducer
(no leakagent) crashed 3 runs of 3 with a Python callback and none of 3 with ``list.append``;
this scenario crashed 1 run of 2 with the tracker's former Python callback. The tracker's
callback is now the C-level ``deque.append``. The scenario runs in a subprocess: a crash would
take pytest down with it.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

SCENARIO = """
    import _thread, gc, threading
    from leakagent.core.tracker import Tracker

    tracker = Tracker(threshold=10**9)
    stop = False

    def collector():
        while not stop:
            gc.collect(0)

    def work():
        for _ in range(10_000):
            local = _thread._local()
            tracker.record("threading.local", ("/app/a.py", 1, "f"), local)
            del local

    threads = [threading.Thread(target=work) for _ in range(3)]
    collecting = threading.Thread(target=collector)
    collecting.start()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    stop = True
    collecting.join()
    totals = tracker.totals()
    assert totals["created"] == 30_000 and totals["live"] == 0, totals
    print("ok")
"""


def test_watched_locals_freed_during_collections_do_not_crash() -> None:
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(SCENARIO)],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert result.returncode == 0, (result.returncode, result.stderr[-2000:])
    assert result.stdout.strip() == "ok"
