"""The report file: safe creation, no leftovers, one writer per path, summary whatever happens."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from tests.helpers import clean_env, launcher, load_report, run_python_launched, write_script

LOCALS = "import threading\nkeep = [threading.local() for _ in range(30)]\n"


def test_a_planted_symlink_at_the_temporary_name_is_not_followed(tmp_path: Path) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    report = tmp_path / "r.json"
    script = write_script(tmp_path, LOCALS + f"""
import os
# the old predictable temporary name; the attacker knows (or guesses) the pid
os.symlink({str(victim)!r}, os.path.join({str(tmp_path)!r}, ".r.json.%d.tmp" % os.getpid()))
""")
    proc = run_python_launched(script, options=["--report", str(report), "--threshold", "10"])
    assert proc.returncode == 0, proc.stderr
    assert victim.read_text() == "precious\n"
    assert load_report(report)["final"] is True
    assert oct(report.stat().st_mode & 0o777) == oct(0o600)


def test_a_precreated_world_writable_temporary_file_is_not_reused(tmp_path: Path) -> None:
    report = tmp_path / "r.json"
    script = write_script(tmp_path, LOCALS + f"""
import os
fd = os.open(os.path.join({str(tmp_path)!r}, ".r.json.%d.tmp" % os.getpid()), os.O_CREAT | os.O_WRONLY, 0o666)
os.fchmod(fd, 0o666)
os.close(fd)
""")
    proc = run_python_launched(script, options=["--report", str(report), "--threshold", "10"])
    assert proc.returncode == 0, proc.stderr
    assert oct(report.stat().st_mode & 0o777) == oct(0o600)
    assert load_report(report)["final"] is True


def test_temporary_files_of_dead_writers_are_removed(tmp_path: Path) -> None:
    report = tmp_path / "r.json"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    leftovers = [tmp_path / f".r.json.{dead.pid}.tmp", tmp_path / f".r.json.{dead.pid}.0a1b2c.tmp"]
    for path in leftovers:
        path.write_text("half a report")
    unrelated = tmp_path / ".other.json.1.tmp"
    unrelated.write_text("not ours")
    script = write_script(tmp_path, LOCALS)
    proc = run_python_launched(script, options=["--report", str(report)])
    assert proc.returncode == 0, proc.stderr
    assert not any(path.exists() for path in leftovers)
    assert unrelated.exists()
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")) == [unrelated.name]


def test_the_summary_is_printed_when_the_report_cannot_be_written(tmp_path: Path) -> None:
    directory = tmp_path / "a-directory"
    directory.mkdir()
    script = write_script(tmp_path, LOCALS)
    proc = run_python_launched(script, options=["--report", str(directory), "--threshold", "10"])
    assert proc.returncode == 0
    assert "cannot write the report" in proc.stderr
    assert "1 suspect call site" in proc.stderr
    assert "report: " not in proc.stderr  # no file to point to


def test_two_processes_given_one_report_path_do_not_overwrite_each_other(tmp_path: Path) -> None:
    report = tmp_path / "shared.json"
    ready = tmp_path / "ready"
    first = write_script(tmp_path, LOCALS + f"""
import pathlib, time
pathlib.Path({str(ready)!r}).touch()
time.sleep(60)
""", name="first.py")
    proc = subprocess.Popen(
        [*launcher(), "--report", str(report), "--report-interval", "0.2", "--threshold", "10",
         sys.executable, str(first)],
        env=clean_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        for _ in range(1200):
            if ready.exists() and report.exists():
                break
            time.sleep(0.05)
        second = write_script(tmp_path, "import threading\nkeep = threading.local()\n", name="second.py")
        other = run_python_launched(second, options=["--report", str(report)])
        assert other.returncode == 0
        time.sleep(0.5)  # a periodic write of the first process
        assert load_report(report)["process"]["pid"] == proc.pid
    finally:
        proc.kill()
        proc.communicate()
    assert other.stderr.count("writes the report") == 1, other.stderr
    (moved,) = [p for p in tmp_path.glob("shared.*.json")]
    assert load_report(moved)["totals"]["created"] >= 1
    assert load_report(moved)["process"]["pid"] != proc.pid


def test_an_unwritable_report_path_does_not_hang_the_exit(tmp_path: Path) -> None:
    """The warning came from the writer thread, which imported threading before the program
    did: the interpreter then waited for that thread at exit, for ever."""
    directory = tmp_path / "a-directory"
    directory.mkdir()
    script = write_script(tmp_path, "import time\ntime.sleep(0.3)\nprint('done')\n")
    proc = run_python_launched(script, options=["--report", str(directory)], timeout=60)
    assert proc.returncode == 0 and proc.stdout == "done\n"
    assert proc.stderr.count("cannot write the report") == 1, proc.stderr


def test_an_absurd_report_interval_warns_once_and_keeps_the_writer(tmp_path: Path) -> None:
    report = tmp_path / "r.json"
    script = write_script(tmp_path, LOCALS + "import time\ntime.sleep(0.5)\n")
    for value in ("inf", "1e10"):
        env = clean_env(LEAKAGENT_REPORT=str(report), LEAKAGENT_REPORT_INTERVAL=value)
        proc = run_python_launched(script, env=env)
        assert proc.returncode == 0
        assert "Traceback" not in proc.stderr and "OverflowError" not in proc.stderr, proc.stderr
        assert proc.stderr.count("LEAKAGENT_REPORT_INTERVAL=") == 1, proc.stderr
        assert load_report(report)["final"] is True


def test_report_viewer_into_a_closed_pipe_ends_quietly(tmp_path: Path) -> None:
    """``leakagent report r.json | head`` ended in a BrokenPipeError traceback."""
    report = tmp_path / "r.json"
    lines = "".join(f"for _ in range(3): keep.append(threading.local())  # {n}\n" for n in range(2000))
    script = write_script(tmp_path, "import threading\nkeep = []\n" + lines)
    made = run_python_launched(script, options=["--report", str(report), "--threshold", "2"])
    assert made.returncode == 0, made.stderr[-2000:]
    viewer = subprocess.Popen([*launcher(), "report", str(report)], env=clean_env(),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert viewer.stdout is not None and viewer.stderr is not None
    viewer.stdout.readline()
    viewer.stdout.close()  # what head does after its lines
    err = viewer.stderr.read().decode()
    viewer.wait(timeout=60)
    assert "Traceback" not in err and "BrokenPipeError" not in err, err


def test_no_report_is_built_at_exit_when_none_is_asked_for(tmp_path: Path) -> None:
    """Without a report path nor a suspect, the exit builds nothing (10k sites: +39 MiB peak)."""
    marker = tmp_path / "built"
    script = write_script(tmp_path, f"""
        import atexit, threading
        import leakagent.outputs.report as report
        keep = [threading.local() for _ in range(5)]

        def spy():  # runs before the agent's own exit hook (registered first)
            real = report.build
            def build(*args, **kwargs):
                open({str(marker)!r}, "w").close()
                return real(*args, **kwargs)
            report.build = build

        atexit.register(spy)
    """)
    proc = run_python_launched(script)
    assert proc.returncode == 0, proc.stderr
    assert not marker.exists()
    with_suspect = run_python_launched(script, options=["--threshold", "2"])
    assert "1 suspect call site" in with_suspect.stderr and marker.exists()
