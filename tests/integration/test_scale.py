"""Exact counts under concurrency and bounded agent memory, in real launched programs."""

from __future__ import annotations

from pathlib import Path

from tests.helpers import load_report, run_python_launched, write_script


def test_locals_counted_exactly_on_16_threads(tmp_path: Path) -> None:
    script = write_script(tmp_path, """
        import threading
        barrier = threading.Barrier(16)
        def work():
            barrier.wait()
            for _ in range(5000):
                threading.local()  # CREATE
        threads = [threading.Thread(target=work) for _ in range(16)]
        for t in threads: t.start()
        for t in threads: t.join()
    """)
    report_path = tmp_path / "r.json"
    result = run_python_launched(script, options=["--report", str(report_path)])
    assert result.returncode == 0, result.stderr
    report = load_report(report_path)
    (site,) = [s for s in report["sites"] if s["file"] == str(script)]
    assert site["created"] == 80_000 and site["threads"] == 16
    assert site["max_per_thread"] == 5000 and site["live"] == 0
    assert site["suspect"] and site["verdict"] == "churn"


def test_correct_per_thread_locals_on_32_threads_are_not_suspects(tmp_path: Path) -> None:
    script = write_script(tmp_path, """
        import threading
        from concurrent.futures import ThreadPoolExecutor
        class Worker:
            def __init__(self):
                self.cache = threading.local()
            def get(self):
                value = getattr(self.cache, "value", None)
                if value is None:
                    value = self.cache.value = threading.local()  # one per thread
                return value
        worker = Worker()
        with ThreadPoolExecutor(32) as pool:
            list(pool.map(lambda n: worker.get(), range(20_000)))
    """)
    report_path = tmp_path / "r.json"
    result = run_python_launched(script, options=["--threshold", "1", "--report",
                                                  str(report_path)])
    assert result.returncode == 0, result.stderr
    report = load_report(report_path)
    assert report["suspects"] == []
    assert "leakagent" not in result.stderr


def test_agent_memory_stays_bounded_with_thousands_of_sites(tmp_path: Path) -> None:
    # 400,000 creations at 5,000 distinct call sites (generated code objects) on 8 threads;
    # the tracker's own allocations are measured with tracemalloc.
    script = write_script(tmp_path, """
        import threading, tracemalloc
        import leakagent.runtime.agent as bootstrap
        funcs = []
        for n in range(5000):
            namespace = {"threading": threading}
            exec(compile("def make():\\n    return threading.local()\\n",
                         f"/generated/site_{n}.py", "exec"), namespace)
            funcs.append(namespace["make"])
        tracemalloc.start()
        before = tracemalloc.take_snapshot()
        def work(offset):
            for i in range(50_000):
                funcs[(i * 7 + offset) % 5000]()
        threads = [threading.Thread(target=work, args=(k,)) for k in range(8)]
        for t in threads: t.start()
        for t in threads: t.join()
        after = tracemalloc.take_snapshot()
        filters = [tracemalloc.Filter(True, "*leakagent*")]
        grown = sum(s.size_diff for s in after.filter_traces(filters).compare_to(
            before.filter_traces(filters), "filename"))
        totals = bootstrap.get_agent().tracker.totals()
        print(totals["created"], totals["sites"], grown)
    """)
    result = run_python_launched(script, options=["--threshold", "1000000"], timeout=300)
    assert result.returncode == 0, result.stderr
    created, sites, grown = map(int, result.stdout.split())
    assert created >= 400_000 and sites >= 5000
    assert grown < 20 * 1024 * 1024, f"the tracker grew by {grown} bytes"


def test_forked_child_has_its_own_counts_and_report(tmp_path: Path) -> None:
    script = write_script(tmp_path, """
        import os, threading
        keep = [threading.local() for _ in range(30)]  # PARENT
        pid = os.fork()
        if pid == 0:
            import time
            mine = [threading.local() for _ in range(12)]  # CHILD
            time.sleep(1)
            os._exit(0)  # no atexit: the periodic report must be there
        os.waitpid(pid, 0)
        print(pid)
    """)
    report_path = tmp_path / "r.json"
    result = run_python_launched(
        script, options=["--report", str(report_path), "--report-interval", "0.1",
                         "--threshold", "5"])
    assert result.returncode == 0, result.stderr
    child_pid = int(result.stdout)
    parent = load_report(report_path)
    child = load_report(tmp_path / f"r.{child_pid}.json")
    assert child["process"]["pid"] == child_pid
    parent_sites = {s["line"]: s["created"] for s in parent["sites"] if s["file"] == str(script)}
    child_sites = {s["line"]: s["created"] for s in child["sites"] if s["file"] == str(script)}
    assert parent_sites == {3: 30}
    assert child_sites == {7: 12}
