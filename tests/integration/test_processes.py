"""Child processes: fork, multiprocessing (fork, spawn, forkserver), subprocess, pools."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.helpers import line_of, load_report, run_python_launched, write_script


def reports_with_site(directory: Path, script: Path) -> dict[int, dict[int, int]]:
    """pid -> {line: created} of every report in ``directory`` that has a site in ``script``."""
    found = {}
    for path in directory.glob("r*.json"):
        report = json.loads(path.read_text())
        sites = {s["line"]: s["created"] for s in report["sites"] if s["file"] == str(script)}
        if sites:
            found[report["process"]["pid"]] = sites
    return found


@pytest.mark.parametrize("method", ["fork", "spawn", "forkserver"])
def test_multiprocessing_children_have_their_own_counts_and_reports(
    method: str, tmp_path: Path
) -> None:
    script = write_script(tmp_path, f"""
        import multiprocessing as mp, os, threading

        def child(n):
            made = [threading.local() for _ in range(n)]  # CHILD
            return os.getpid()

        if __name__ == "__main__":
            parent = [threading.local() for _ in range(7)]  # PARENT
            ctx = mp.get_context({method!r})
            procs = [ctx.Process(target=child, args=(n,)) for n in (11, 13)]
            for p in procs: p.start()
            for p in procs: p.join()
            print(os.getpid(), *[p.pid for p in procs])
    """)
    result = run_python_launched(
        script, cwd=tmp_path, options=["--report", str(tmp_path / "r.json"), "--threshold", "5"]
    )
    assert result.returncode == 0, result.stderr
    parent_pid, *child_pids = map(int, result.stdout.split())
    found = reports_with_site(tmp_path, script)
    assert found[parent_pid] == {line_of(script, "# PARENT"): 7}
    child_line = line_of(script, "# CHILD")
    assert sorted(found[pid][child_line] for pid in child_pids) == [11, 13]
    for pid in child_pids:  # the final report, not only a periodic one
        assert load_report(tmp_path / f"r.{pid}.json")["final"] is True


def test_process_pool_executor_and_subprocess(tmp_path: Path) -> None:
    script = write_script(tmp_path, """
        import os, subprocess, sys, threading
        from concurrent.futures import ProcessPoolExecutor

        def work(n):
            for _ in range(20):
                threading.local()  # WORKER
            return os.getpid()

        if __name__ == "__main__":
            with ProcessPoolExecutor(2) as pool:
                pids = set(pool.map(work, range(6)))
            code = "import threading\\nfor _ in range(9): threading.local()\\n"
            sub = subprocess.run([sys.executable, "-c", code])
            print(len(pids), sub.returncode)
    """)
    report_dir = tmp_path / "reports"
    report_dir.mkdir()
    result = run_python_launched(
        script, cwd=tmp_path, options=["--report", str(report_dir / "r-{pid}.json")]
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[1] == "0"
    per_process = {}
    for path in report_dir.glob("r-*.json"):
        report = json.loads(path.read_text())
        assert path.name == f"r-{report['process']['pid']}.json"
        per_process[report["process"]["pid"]] = report
    worker_counts = [
        sum(
            s["created"]
            for s in r["sites"]
            if s["file"] == str(script) and s["line"] == line_of(script, "# WORKER")
        )
        for r in per_process.values()
    ]
    assert sum(worker_counts) == 6 * 20  # every creation counted once, in its own process
    assert any(
        s["file"] == "<string>" and s["created"] == 9
        for r in per_process.values() for s in r["sites"]
    )


def test_prefork_workers_like_gunicorn(tmp_path: Path) -> None:
    script = write_script(tmp_path, """
        import os, sys, threading
        children = []
        for worker in range(3):
            pid = os.fork()
            if pid == 0:
                for _ in range(10 * (worker + 1)):
                    threading.local()  # WORKER
                sys.exit(0)  # gunicorn workers exit through sys.exit: atexit runs
            children.append(pid)
        for pid in children:
            os.waitpid(pid, 0)
        print(*children)
    """)
    result = run_python_launched(
        script, cwd=tmp_path, options=["--report", str(tmp_path / "r.json")]
    )
    assert result.returncode == 0, result.stderr
    children = list(map(int, result.stdout.split()))
    found = reports_with_site(tmp_path, script)
    line = line_of(script, "# WORKER")
    assert sorted(found[pid][line] for pid in children) == [10, 20, 30]
    for pid in children:
        assert load_report(tmp_path / f"r.{pid}.json")["final"] is True


def test_fork_while_another_thread_is_inside_the_tracker(tmp_path: Path) -> None:
    script = write_script(tmp_path, """
        import os, threading
        stop = False
        def busy():
            while not stop:
                threading.local()
        t = threading.Thread(target=busy, daemon=True)
        t.start()
        for _ in range(40):
            pid = os.fork()
            if pid == 0:
                for _ in range(100):
                    threading.local()  # must not deadlock on a lock held at fork time
                os._exit(0)
            _, status = os.waitpid(pid, 0)
            assert status == 0
        stop = True
        t.join()
        print("ok")
    """)
    result = run_python_launched(script, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "ok\n"


def test_pythonpath_does_not_pile_up_in_grandchildren(tmp_path: Path) -> None:
    script = write_script(tmp_path, """
        import os, subprocess, sys
        depth = int(sys.argv[1])
        if depth < 3:
            subprocess.run([sys.executable, __file__, str(depth + 1)], check=True)
        else:
            print(os.environ["PYTHONPATH"])
    """)
    result = run_python_launched(script, "0")
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.strip().split(os.pathsep)) == 1
