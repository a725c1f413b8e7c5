"""The CI gate: ``leakagent --fail-on-suspect[=CODE] COMMAND`` with real programs."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from leakagent.tools.gate import EXIT_SUSPECTS
from tests.helpers import clean_env, launcher, run_python_launched, write_script

PROGRAM = """
    import sys
    import threading


    def make():
        return threading.local()


    for _ in range(int(sys.argv[1])):
        make()
    sys.exit(int(sys.argv[2]))
"""


@pytest.fixture
def program(tmp_path: Path) -> Path:
    return write_script(tmp_path, PROGRAM)


@pytest.mark.parametrize(
    ("creations", "exit_code", "expected"),
    [
        (0, 0, 0),  # clean run: 0
        (20, 0, EXIT_SUSPECTS),  # suspects in a successful run: the gate's code
        (0, 3, 3),  # the program failed: its code
        (20, 3, 3),  # the program failed and suspects: the program's code wins
    ],
)
def test_exit_codes(program: Path, creations: int, exit_code: int, expected: int) -> None:
    result = run_python_launched(
        program, str(creations), str(exit_code), options=["--threshold", "5", "--fail-on-suspect"]
    )
    assert result.returncode == expected, result.stderr
    if creations:
        assert "threading.local — churn" in result.stderr  # the agent's own exit summary
        assert "--fail-on-suspect: 1 suspect call site in 1 process" in result.stderr
    else:
        assert "suspect call site" not in result.stderr


def test_custom_code_and_exec_mode_unchanged(program: Path) -> None:
    result = run_python_launched(
        program, "20", "0", options=["--threshold", "5", "--fail-on-suspect=42"]
    )
    assert result.returncode == 42, result.stderr
    assert "exit code 42" in result.stderr
    # Without the option the launcher execs and the program's code is the run's code.
    result = run_python_launched(program, "20", "0", options=["--threshold", "5"])
    assert result.returncode == 0
    assert "threading.local — churn" in result.stderr


@pytest.mark.parametrize("value", ["0", "256", "x", "-1"])
def test_bad_code_is_a_usage_error(program: Path, value: str) -> None:
    result = run_python_launched(program, "0", "0", options=[f"--fail-on-suspect={value}"])
    assert result.returncode == 2
    assert "--fail-on-suspect" in result.stderr


def test_command_flags_after_a_bare_option_stay_the_commands(tmp_path: Path) -> None:
    # The bare option must not swallow the command's first word (nor its flags).
    result = subprocess.run(
        [*launcher(), "--fail-on-suspect", sys.executable, "-c",
         "import sys; print(sys.argv[1:])", "--fail-on-suspect", "-x"],
        env=clean_env(), capture_output=True, text=True, timeout=120, cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "['--fail-on-suspect', '-x']"


def test_suspects_in_a_child_process_count(tmp_path: Path) -> None:
    child = write_script(tmp_path, PROGRAM, "child.py")
    parent = write_script(
        tmp_path,
        f"""
        import subprocess, sys
        subprocess.run([sys.executable, {str(child)!r}, "20", "0"], check=True)
        """,
        "parent.py",
    )
    report = tmp_path / "report.json"
    result = run_python_launched(
        parent, options=["--threshold", "5", "--report", str(report), "--fail-on-suspect"]
    )
    assert result.returncode == EXIT_SUSPECTS, result.stderr
    # The root process kept the asked path; the child wrote its own beside it.
    assert report.exists()
    assert len(list(tmp_path.glob("report.*.json"))) == 1


def test_stale_reports_are_ignored(tmp_path: Path, program: Path) -> None:
    report = tmp_path / "report.json"
    assert run_python_launched(
        program, "20", "0", options=["--threshold", "5", "--report", str(report)]
    ).returncode == 0
    assert json.loads(report.read_text())["suspects"]
    stale = tmp_path / "report.12345.json"  # a child's report left by an earlier run
    stale.write_text(report.read_text())
    options = ["--threshold", "5", "--report", str(report), "--fail-on-suspect"]
    result = run_python_launched(program, "0", "0", options=options)
    assert result.returncode == 0, result.stderr


def test_killed_program_keeps_its_signal_code_and_the_report_speaks(tmp_path: Path) -> None:
    program = write_script(
        tmp_path,
        """
        import json, os, signal, threading, time
        keep = [threading.local() for _ in range(20)]
        path = os.environ["LEAKAGENT_REPORT"].replace("{pid}", str(os.getpid()))
        while True:  # until the periodic report holds the suspect (the test's timeout bounds it)
            try:
                if json.load(open(path))["suspects"]:
                    break
            except (OSError, ValueError):
                pass
            time.sleep(0.05)
        os.kill(os.getpid(), signal.SIGKILL)  # what the OOM killer does
        """,
    )
    result = run_python_launched(program, options=["--threshold", "5", "--fail-on-suspect"])
    assert result.returncode == 128 + signal.SIGKILL
    assert "(not final)" in result.stderr
    assert "threading.local — retention" in result.stderr
    assert f"the command's own exit code {128 + signal.SIGKILL} wins" in result.stderr


def test_sigterm_is_forwarded(tmp_path: Path) -> None:
    program = write_script(
        tmp_path,
        """
        import signal, sys, threading, time
        for _ in range(20):
            threading.local()
        signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
        print("ready", flush=True)
        while True:
            time.sleep(0.1)
        """,
    )
    process = subprocess.Popen(
        [*launcher(), "--threshold", "5", "--fail-on-suspect", sys.executable, str(program)],
        env=clean_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert process.stdout is not None
        assert process.stdout.readline().strip() == "ready"
        process.send_signal(signal.SIGTERM)  # to the launcher: the program must get it
        _, stderr = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == EXIT_SUSPECTS, stderr
