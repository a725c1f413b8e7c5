"""Memory per call site: estimates checked on programs whose truth is known."""

from __future__ import annotations

from leakagent.core.tracker import Tracker
from leakagent.outputs import report, sizing

MB = 1_000_000
KEEP = ("app.Client", "/app/jobs.py", 12, "keep")
CHURN = ("app.Client", "/app/jobs.py", 30, "churn")


class Client:
    """A client whose instances each hold 1 MB of their own and share one session."""

    session = None

    def __init__(self, shared: object) -> None:
        self.buffer = bytearray(MB)
        self.shared = shared
        self.name = "client"


def _record(tracker: Tracker, key: tuple[str, str, int, str], obj: object) -> None:
    tracker.record(key[0], (key[1], key[2], key[3]), obj)


def test_retained_site_reads_its_memory_and_a_churning_one_is_not_blamed() -> None:
    tracker = Tracker(threshold=50)
    shared = [bytearray(MB) for _ in range(20)]  # 20 MB every client refers to
    kept = []
    for _ in range(200):
        client = Client(shared)
        kept.append(client)
        _record(tracker, KEEP, client)
    for _ in range(300):
        _record(tracker, CHURN, Client(shared))  # made and dropped at once
    sizes = sizing.Sizer(tracker).site_bytes()
    each, live_bytes = sizes[KEEP]
    assert each is not None and 0.95 * MB < each < 1.1 * MB  # the shared 20 MB not counted
    assert 150 * MB <= live_bytes <= 260 * MB
    assert sizes.get(CHURN, (None, 0))[1] < 5 * MB


def test_sample_live_hands_out_live_instances_only() -> None:
    tracker = Tracker()
    kept = [Client(None) for _ in range(3)]
    for client in kept:
        _record(tracker, KEEP, client)
    _record(tracker, KEEP, Client(None))
    assert {id(c) for c in tracker.sample_live(KEEP, 10)} == {id(c) for c in kept}
    assert len(tracker.sample_live(KEEP, 2)) == 2
    assert tracker.sample_live(CHURN, 5) == []


def test_estimate_is_kept_when_the_instances_are_gone() -> None:
    tracker = Tracker()
    kept = [Client(None) for _ in range(4)]
    for client in kept:
        _record(tracker, KEEP, client)
    sizer = sizing.Sizer(tracker)
    first = sizer.per_instance(KEEP, now=0.0)
    del kept[:]
    assert sizer.per_instance(KEEP, now=100.0) == first


def test_the_warning_and_report_show_the_memory() -> None:
    site = {
        "kind": "app.Client", "base": None, "file": "/app/jobs.py", "line": 12,
        "function": "keep", "live": 200, "created": 200, "verdict": "retention",
        "bytes_per_instance": 1_000_113, "live_bytes": 200_022_600,
    }
    line = report.warning_line(site, "retention", 50)
    assert "(retention, ~1.0 MB each, ~200 MB live)" in line
