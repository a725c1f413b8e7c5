"""Signals and exits behave exactly as without the agent, and the facts still get out."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers import clean_env, launcher, load_report, run_python_launched, write_script

LOCALS = "import threading\nkeep = [threading.local() for _ in range(30)]\n"


def compare(script: Path, tmp_path: Path) -> tuple[subprocess.CompletedProcess[str], ...]:
    plain = subprocess.run([sys.executable, str(script)], env=clean_env(),
                           capture_output=True, text=True, timeout=60)
    launched = run_python_launched(script, options=["--report", str(tmp_path / "r.json"),
                                                    "--threshold", "10"])
    return plain, launched


@pytest.mark.parametrize(
    "ending, code",
    [
        ("import sys; sys.exit(4)", 4),
        ("import sys; sys.exit('bad')", 1),
        ("raise SystemExit(0)", 0),
        ("raise RuntimeError('unhandled')", 1),
    ],
)
def test_exits_keep_their_code_and_output(ending: str, code: int, tmp_path: Path) -> None:
    script = write_script(tmp_path, LOCALS + "print('hello')\n" + ending + "\n")
    plain, launched = compare(script, tmp_path)
    assert plain.returncode == launched.returncode == code
    assert plain.stdout == launched.stdout == "hello\n"
    assert plain.stderr in launched.stderr  # the program's own error output, unchanged
    assert load_report(tmp_path / "r.json")["final"] is True


def test_os_exit_leaves_the_periodic_report(tmp_path: Path) -> None:
    script = write_script(tmp_path, LOCALS + "import os, time\ntime.sleep(0.5)\nos._exit(9)\n")
    result = run_python_launched(script, options=["--report", str(tmp_path / "r.json"),
                                                  "--report-interval", "0.1",
                                                  "--threshold", "10"])
    assert result.returncode == 9
    report = load_report(tmp_path / "r.json")
    assert report["final"] is False and report["suspects"][0]["created"] == 30
    assert "threading.local created 11 times" in result.stderr  # the warning got out


def test_daemon_thread_still_running_at_exit(tmp_path: Path) -> None:
    script = write_script(tmp_path, """
        import threading, time
        def spin():
            while True:
                threading.local()
        threading.Thread(target=spin, daemon=True).start()
        time.sleep(0.3)
        print("main done")
    """)
    plain, launched = compare(script, tmp_path)
    assert plain.returncode == launched.returncode == 0
    assert launched.stdout == "main done\n"
    assert load_report(tmp_path / "r.json")["final"] is True


def start(script: Path, tmp_path: Path, *options: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*launcher(), "--report", str(tmp_path / "r.json"), "--report-interval", "0.1",
         "--threshold", "10", *options, sys.executable, str(script)],
        env=clean_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def wait_for(path: Path) -> None:
    for _ in range(600):
        if path.exists():
            return
        time.sleep(0.05)
    raise AssertionError(f"{path} never appeared")


def test_sigint_raises_keyboardinterrupt_as_usual(tmp_path: Path) -> None:
    ready = tmp_path / "ready"
    script = write_script(tmp_path, LOCALS + f"""
import pathlib, time
pathlib.Path({str(ready)!r}).touch()
try:
    time.sleep(60)
except KeyboardInterrupt:
    print("interrupted", flush=True)
    raise SystemExit(130)
""")
    proc = start(script, tmp_path)
    wait_for(ready)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and out == "interrupted\n"
    assert load_report(tmp_path / "r.json")["final"] is True
    assert "1 suspect call site" in err


def test_sigkill_leaves_the_last_periodic_report_and_the_warnings(tmp_path: Path) -> None:
    ready = tmp_path / "ready"
    script = write_script(tmp_path, LOCALS + f"""
import pathlib, time
time.sleep(0.5)
pathlib.Path({str(ready)!r}).touch()
time.sleep(60)
""")
    proc = start(script, tmp_path)
    wait_for(ready)
    proc.kill()
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    report = load_report(tmp_path / "r.json")
    assert report["final"] is False and report["suspects"][0]["created"] == 30
    assert "threading.local created 11 times" in err


@pytest.mark.parametrize(
    "options",
    [["--report", "/proc/no/such/dir/r.json"], ["--report", "{tmp}/r.json"], []],
    ids=["unwritable-report", "report", "no-report"],
)
def test_the_agents_threads_never_become_threadings_main_thread(
    tmp_path: Path, options: list[str]
) -> None:
    """A program that imports threading late: if one of the agent's raw threads imported it
    first (through logging, say), threading took that thread for the main one, and the exit
    waited for it for ever (every program with an unwritable report path hung)."""
    script = write_script(tmp_path, """
        import time
        time.sleep(0.5)
        import threading
        print(threading.current_thread() is threading.main_thread())
        """)
    options = [o.replace("{tmp}", str(tmp_path)) for o in options]
    result = run_python_launched(script, options=options, timeout=60)
    assert result.returncode == 0 and result.stdout == "True\n", result.stderr
