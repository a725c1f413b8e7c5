"""Load: 64 threads, a million creations at thousands of call sites."""

from __future__ import annotations

from pathlib import Path

from tests.helpers import run_python_launched, write_script


def test_million_creations_on_64_threads_exact_and_bounded(tmp_path: Path) -> None:
    script = write_script(tmp_path, """
        import threading, tracemalloc, requests
        import leakagent.runtime.agent as bootstrap
        SITES, THREADS, PER_THREAD = 2000, 64, 16_000
        funcs = []
        for n in range(SITES):
            namespace = {"threading": threading, "requests": requests}
            exec(compile(
                "def make_local():\\n    return threading.local()\\n"
                "def make_session():\\n    return requests.Session()\\n",
                f"/generated/site_{n}.py", "exec"), namespace)
            funcs.append((namespace["make_local"], namespace["make_session"]))
        tracemalloc.start()
        before = tracemalloc.take_snapshot()
        barrier = threading.Barrier(THREADS)
        def work(k):
            barrier.wait()
            for i in range(PER_THREAD):
                make_local, make_session = funcs[(i * 31 + k) % SITES]
                make_local()
                if i % 100 == 0:
                    make_session().close()
        threads = [threading.Thread(target=work, args=(k,)) for k in range(THREADS)]
        for t in threads: t.start()
        for t in threads: t.join()
        after = tracemalloc.take_snapshot()
        only_agent = [tracemalloc.Filter(True, "*leakagent*")]
        grown = sum(s.size_diff for s in after.filter_traces(only_agent).compare_to(
            before.filter_traces(only_agent), "filename"))
        sites = bootstrap.get_agent().tracker.snapshot()
        locals_ = sum(s["created"] for s in sites if s["kind"] == "threading.local"
                      and s["file"].startswith("/generated/"))
        sessions = sum(s["created"] for s in sites if s["kind"] == "requests.Session")
        print(locals_, sessions, len(sites), grown)
    """)
    result = run_python_launched(script, options=["--threshold", "100000000"], timeout=900)
    assert result.returncode == 0, result.stderr
    locals_, sessions, sites, grown = map(int, result.stdout.split())
    assert locals_ == 64 * 16_000
    assert sessions == 64 * 160
    assert sites > 2000  # every local site, and the session sites
    assert grown < 20 * 1024 * 1024, f"the agent's own memory grew by {grown} bytes"
