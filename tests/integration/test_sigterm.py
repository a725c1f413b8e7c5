"""SIGTERM: the final report, and a death as prompt as without the agent (issue 13, 15)."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers import IN_CI, clean_env, launcher, load_report, write_script


def _wait_for(path: Path) -> None:
    for _ in range(1200):
        if path.exists():
            return
        time.sleep(0.05)
    raise AssertionError(f"{path} never appeared")


def test_sigterm_during_a_long_c_call_kills_at_once_with_the_final_report(tmp_path: Path) -> None:
    """pbkdf2 with 2**31 rounds is many minutes of C without the GIL and without a check for
    signals: a Python-level handler would wait for it; the process must die of SIGTERM now."""
    report_path = tmp_path / "busy.json"
    ready = tmp_path / "ready"
    script = write_script(tmp_path, f"""
        import hashlib, pathlib, threading
        keep = [threading.local() for _ in range(30)]
        pathlib.Path({str(ready)!r}).touch()
        hashlib.pbkdf2_hmac("sha256", b"password", b"salt", 2**31 - 1)
        print("the call returned")
    """)
    proc = subprocess.Popen(
        [*launcher(), "--report", str(report_path), "--report-interval", "60",
         "--threshold", "10", sys.executable, str(script)],
        env=clean_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        _wait_for(ready)
        time.sleep(0.3)  # inside the C call
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=120)  # the call itself lasts many minutes
    finally:
        proc.kill()
    assert proc.returncode == -signal.SIGTERM, err
    assert out == ""
    report = load_report(report_path)
    assert report["final"] is True and report["suspects"][0]["created"] == 30
    assert "1 suspect call site" in err


def test_sigterm_handler_of_the_program_installed_later_wins(tmp_path: Path) -> None:
    """The agent installs no Python handler: getsignal() says SIG_DFL, as without it."""
    ready = tmp_path / "ready"
    script = write_script(tmp_path, f"""
        import pathlib, signal, sys, time
        print(signal.getsignal(signal.SIGTERM) is signal.SIG_DFL, flush=True)
        def handler(signum, frame):
            print("handled", flush=True)
            sys.exit(3)
        signal.signal(signal.SIGTERM, handler)
        pathlib.Path({str(ready)!r}).touch()
        time.sleep(60)
    """)
    proc = subprocess.Popen(
        [*launcher(), "--report", str(tmp_path / "r.json"), sys.executable, str(script)],
        env=clean_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    _wait_for(ready)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 3, err
    assert out == "True\nhandled\n"
    assert load_report(tmp_path / "r.json")["final"] is True


@pytest.mark.parametrize("method", ["fork", "spawn", "forkserver"])
def test_every_pool_worker_leaves_its_final_report(tmp_path: Path, method: str) -> None:
    """``with Pool(2):`` ends with terminate(): SIGTERM to each worker, maybe mid-write."""
    script = write_script(tmp_path, f"""
        import multiprocessing, os, threading

        def work(n):
            keep = [threading.local() for _ in range(20)]
            return os.getpid()

        if __name__ == "__main__":
            multiprocessing.set_start_method({method!r})
            for run in range(6):
                with multiprocessing.Pool(2) as pool:
                    pids = set(pool.map(work, range(8), chunksize=1))
                print(run, *sorted(pids), flush=True)
    """)
    report = tmp_path / "pool.json"
    proc = subprocess.run(
        [*launcher(), "--report", str(report), "--threshold", "1000", sys.executable, str(script)],
        env=clean_env(), capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    missing, lost = [], []
    for line in proc.stdout.splitlines():
        run, *pids = line.split()
        created = 0
        for pid in pids:
            path = tmp_path / f"pool.{pid}.json"
            if not path.exists() or load_report(path)["final"] is not True:
                missing.append(pid)
                continue
            sites = load_report(path)["sites"]
            created += sum(s["created"] for s in sites if s["file"] == str(script))
        if created != 8 * 20:
            lost.append((run, created))
    assert not missing, f"workers without a final report: {missing}\n{proc.stderr}"
    assert not lost, f"runs whose workers' reports lack creations: {lost}"


@pytest.mark.parametrize("ending", ["close-join", "terminate"])
def test_every_billiard_pool_worker_leaves_its_final_report(tmp_path: Path, ending: str) -> None:
    """Celery's process pool (billiard): its workers end with os._exit() like multiprocessing's,
    and were never given a final report (0 of 40 creations reported)."""
    pytest.importorskip("billiard") if not IN_CI else None
    script = write_script(tmp_path, f"""
        import os, threading
        import billiard

        def work(n):
            keep = [threading.local() for _ in range(4)]
            return os.getpid()

        if __name__ == "__main__":
            pool = billiard.Pool(2)
            pids = set(pool.map(work, range(10), chunksize=1))
            if {ending!r} == "terminate":
                pool.terminate()
            else:
                pool.close()
            pool.join()
            print(*sorted(pids), flush=True)
    """)
    report = tmp_path / "celery.json"
    proc = subprocess.run(
        [*launcher(), "--report", str(report), "--threshold", "1000", sys.executable, str(script)],
        env=clean_env(), capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    created = 0
    for pid in proc.stdout.split():
        path = tmp_path / f"celery.{pid}.json"
        assert path.exists(), f"worker {pid} left no report\n{proc.stderr}"
        data = load_report(path)
        assert data["final"] is True, pid
        created += sum(s["created"] for s in data["sites"] if s["file"] == str(script))
    assert created == 40


def test_sigterm_during_a_call_that_holds_the_gil_still_dies_of_sigterm(tmp_path: Path) -> None:
    """sum() holds the GIL: no other thread runs until it returns. If the program then
    reaches its end before the agent's thread runs, it must still die of SIGTERM."""
    report_path = tmp_path / "gil.json"
    ready = tmp_path / "ready"
    script = write_script(tmp_path, f"""
        import pathlib, threading
        keep = [threading.local() for _ in range(30)]
        pathlib.Path({str(ready)!r}).touch()
        sum(range(2 * 10**8))
    """)
    proc = subprocess.Popen(
        [*launcher(), "--report", str(report_path), "--threshold", "10", sys.executable,
         str(script)],
        env=clean_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    _wait_for(ready)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == -signal.SIGTERM, err
    assert load_report(report_path)["final"] is True
