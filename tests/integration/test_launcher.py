"""The launcher and container mode, as real subprocesses."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers import (
    IN_CI,
    clean_env,
    launcher,
    load_report,
    run_container_mode,
    run_launched,
    run_python_launched,
    sitecustomize_dir,
    write_script,
)

PROBE = """
import sys, threading
counting = "__leakagent_counting__" in vars(threading.local)
print("proxied" if counting else "plain")
"""


def test_sitecustomize_dir_is_a_real_directory() -> None:
    directory = Path(sitecustomize_dir())
    assert (directory / "sitecustomize.py").is_file()


def test_help_documents_every_option_and_variable() -> None:
    result = run_launched(["--help"])
    assert result.returncode == 0
    for text in ("--threshold", "--report", "--sitecustomize-dir", "LEAKAGENT_THRESHOLD",
                 "LEAKAGENT_REPORT", "LEAKAGENT_ENABLED", "PYTHONPATH"):
        assert text in result.stdout


def test_python_dash_m_leakagent_is_the_launcher(tmp_path: Path) -> None:
    script = write_script(tmp_path, PROBE)
    result = subprocess.run(
        [sys.executable, "-m", "leakagent", sys.executable, str(script)],
        env=clean_env(), capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "proxied\n"


def test_agent_loads_under_launcher_and_in_container_mode(tmp_path: Path) -> None:
    script = write_script(tmp_path, PROBE)
    assert run_python_launched(script).stdout == "proxied\n"
    assert run_container_mode([str(script)]).stdout == "proxied\n"
    plain = subprocess.run([sys.executable, str(script)], env=clean_env(),
                           capture_output=True, text=True)
    assert plain.stdout == "plain\n"


NATIVE_PROBE = """
import threading
from leakagent.hooks import threadlocal
def make():
    return threading.local()
for _ in range(500):
    make()
print(threadlocal.uses_native(threading.local))
"""


def test_the_c_fast_path_counts_in_a_real_process_unless_switched_off(tmp_path: Path) -> None:
    # The installed package carries the C fast path (CI installs it as a user would: the
    # build must have worked there); LEAKAGENT_NATIVE=0 takes the Python one; both count
    # every creation at the site exactly.
    script = write_script(tmp_path, NATIVE_PROBE)
    built = run_container_mode(["-c", "from leakagent.hooks import threadlocal; "
                                "print(threadlocal.native_new() is not None)"])
    if built.stdout.strip() != "True" and not IN_CI:
        pytest.skip("the C fast path was not built here (no compiler at install time)")
    for value, expected in (("1", "True"), ("0", "False")):
        report = tmp_path / f"r{value}.json"
        result = run_container_mode(
            [str(script)],
            env=clean_env(LEAKAGENT_NATIVE=value, LEAKAGENT_REPORT=str(report),
                          LEAKAGENT_LOG_LEVEL="ERROR"),
        )
        assert result.returncode == 0, result.stderr
        assert result.stdout == f"{expected}\n"
        (site,) = [s for s in load_report(report)["sites"] if s["function"] == "make"]
        assert site["created"] == 500 and site["verdict"] == "churn"
        said = run_launched(["--version"], env=clean_env(LEAKAGENT_NATIVE=value)).stdout
        assert ("fast path: C)" in said) is (expected == "True"), said


def test_disabled_agent_changes_nothing(tmp_path: Path) -> None:
    script = write_script(tmp_path, PROBE)
    for value in ("0", "false", "no", "off"):
        result = run_container_mode([str(script)], env=clean_env(LEAKAGENT_ENABLED=value))
        assert result.stdout == "plain\n" and result.stderr == ""
    assert run_python_launched(script, options=["--disable"]).stdout == "plain\n"


def test_command_not_found_exits_127() -> None:
    result = run_launched(["no-such-command-leakagent-test"])
    assert result.returncode == 127
    assert "command not found: no-such-command-leakagent-test" in result.stderr


def test_no_command_is_a_usage_error() -> None:
    result = run_launched([])
    assert result.returncode == 2 and "no command" in result.stderr


def test_exit_code_stdout_and_pid_are_the_programs_own(tmp_path: Path) -> None:
    script = write_script(tmp_path, """
        import os, sys, threading
        for _ in range(100):
            threading.local()
        sys.stdout.write("out\\n")
        sys.stderr.write("err\\n")
        print(os.getpid(), flush=True)
        sys.exit(3)
    """)
    proc = subprocess.Popen([*launcher(), sys.executable, str(script)], env=clean_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 3
    lines = out.splitlines()
    assert lines[0] == "out" and int(lines[1]) == proc.pid  # exec kept the pid
    assert "err\n" in err and "threading.local created 41 times" in err


def test_unhandled_exception_behaves_as_without_agent(tmp_path: Path) -> None:
    script = write_script(tmp_path, "raise ValueError('boom')\n")
    plain = subprocess.run([sys.executable, str(script)], env=clean_env(),
                           capture_output=True, text=True)
    launched = run_python_launched(script)
    assert launched.returncode == plain.returncode == 1
    assert launched.stderr == plain.stderr


def test_flags_that_stop_sitecustomize_are_warned_about(tmp_path: Path) -> None:
    script = write_script(tmp_path, PROBE)
    result = run_launched([sys.executable, "-I", str(script)])
    assert result.returncode == 0
    assert "-I stops Python from running sitecustomize" in result.stderr
    assert result.stdout == "plain\n"


def test_users_own_sitecustomize_still_runs_once(tmp_path: Path) -> None:
    user_dir = tmp_path / "user"
    user_dir.mkdir()
    write_script(user_dir, """
        import os, sys
        agent = "leakagent.runtime.agent" in sys.modules
        sys.stderr.write(f"user sitecustomize ran (agent loaded: {agent})\\n")
        sys.path.append("/added/by/user")
        USER = True
    """, name="sitecustomize.py")
    script = write_script(tmp_path, """
        import os, sys, threading, sitecustomize
        counting = "__leakagent_counting__" in vars(threading.local)
        print("counting" if counting else "plain", getattr(sitecustomize, "USER", False),
              "/added/by/user" in sys.path, os.getpid())
    """)
    env = clean_env(PYTHONPATH=str(user_dir))
    for result in (
        run_python_launched(script, env=env),
        run_container_mode([str(script)], env=env),
    ):
        assert result.returncode == 0, result.stderr
        assert result.stdout.split()[:3] == ["counting", "True", "True"]
        # (the launcher's own interpreter, before exec, runs it too, without the agent)
        assert result.stderr.count("user sitecustomize ran (agent loaded: True)") == 1


def test_our_directory_twice_on_the_path_initialises_once(tmp_path: Path) -> None:
    script = write_script(tmp_path, """
        import threading, leakagent.runtime.agent as b
        for _ in range(5):
            threading.local()
        print(b.get_agent().tracker.totals()["created"] >= 5)
    """)
    directory = sitecustomize_dir()
    env = clean_env(PYTHONPATH=os.pathsep.join([directory, directory]))
    result = run_python_launched(script, env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "True\n"
    assert os.environ.get("PYTHONPATH", "") == "" or True


def test_launcher_does_not_pile_up_pythonpath(tmp_path: Path) -> None:
    script = write_script(tmp_path, """
        import os, subprocess, sys
        print(os.environ["PYTHONPATH"])
    """)
    directory = sitecustomize_dir()
    env = clean_env(PYTHONPATH=os.pathsep.join([directory, "/x"]))
    result = run_python_launched(script, env=env)
    assert result.stdout.strip() == os.pathsep.join([directory, "/x"])


def test_periodic_report_exists_while_the_program_runs(tmp_path: Path) -> None:
    report_path = tmp_path / "live.json"
    go_on = tmp_path / "go-on"
    script = write_script(tmp_path, f"""
        import os, threading, time
        keep = [threading.local() for _ in range(80)]
        deadline = time.time() + 60
        while not os.path.exists({str(go_on)!r}) and time.time() < deadline:
            time.sleep(0.05)
    """)
    proc = subprocess.Popen(
        [*launcher(), "--report", str(report_path), "--report-interval", "0.2",
         "--threshold", "10", sys.executable, str(script)],
        env=clean_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        report = None
        for _ in range(600):
            if report_path.exists():
                report = load_report(report_path)
                if report["suspects"] and report["suspects"][0]["created"] == 80:
                    break
            time.sleep(0.05)
        assert proc.poll() is None, "the program should still be running"
        assert report is not None and report["final"] is False
        (site,) = report["suspects"]
        assert site["kind"] == "threading.local" and site["created"] == 80
        assert site["verdict"] == "retention" and site["live"] == 80
        assert oct(report_path.stat().st_mode & 0o777) == oct(0o600)
    finally:
        go_on.touch()
        proc.communicate(timeout=60)
    assert proc.returncode == 0
    assert load_report(report_path)["final"] is True


def test_sigterm_writes_the_final_report_and_dies_of_sigterm(tmp_path: Path) -> None:
    report_path = tmp_path / "term.json"
    ready = tmp_path / "ready"
    script = write_script(tmp_path, f"""
        import threading, time, pathlib
        keep = [threading.local() for _ in range(30)]
        pathlib.Path({str(ready)!r}).touch()
        time.sleep(60)
    """)
    proc = subprocess.Popen(
        [*launcher(), "--report", str(report_path), "--report-interval", "60",
         "--threshold", "10", sys.executable, str(script)],
        env=clean_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    for _ in range(600):
        if ready.exists():
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGTERM
    report = load_report(report_path)
    assert report["final"] is True and report["suspects"][0]["created"] == 30
    assert "1 suspect call site" in err


def test_program_sigterm_handler_is_kept(tmp_path: Path) -> None:
    ready = tmp_path / "ready"
    script = write_script(tmp_path, f"""
        import signal, sys, time, pathlib
        def handler(signum, frame):
            print("handled", flush=True)
            sys.exit(7)
        signal.signal(signal.SIGTERM, handler)
        pathlib.Path({str(ready)!r}).touch()
        time.sleep(60)
    """)
    proc = subprocess.Popen([*launcher(), sys.executable, str(script)], env=clean_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for _ in range(600):
        if ready.exists():
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 7 and out == "handled\n"


@pytest.mark.parametrize(
    "faults, parts",
    [
        ("local-hook,client-hook,report", ["local-hook", "client-hook", "report"]),
        ("tracker", ["local-hook", "client-hook"]),  # the hooks calling it switch off
        ("callsite", ["local-hook", "client-hook"]),
    ],
)
def test_injected_failures_never_reach_the_program(
    faults: str, parts: list[str], tmp_path: Path
) -> None:
    script = write_script(tmp_path, """
        import threading, requests
        class Ctx(threading.local):
            pass
        total = 0
        for _ in range(60):
            local = threading.local()
            local.value = 1
            total += local.value
            Ctx()
            with requests.Session() as s:
                total += len(s.headers) > 0
        print(total)
    """)
    plain = subprocess.run([sys.executable, str(script)], env=clean_env(),
                           capture_output=True, text=True)
    env = clean_env(LEAKAGENT_STRICT="0", LEAKAGENT_TEST_FAULT=faults)
    result = run_python_launched(script, env=env,
                                 options=["--report", str(tmp_path / "r.json")])
    assert result.returncode == plain.returncode == 0
    assert result.stdout == plain.stdout == "120\n"
    for part in parts:
        assert result.stderr.count(f"internal error in {part} ") == 1, result.stderr
    assert result.stderr.count("internal error") == len(parts), result.stderr


def test_report_path_in_an_unwritable_place_warns(tmp_path: Path) -> None:
    script = write_script(tmp_path, "import threading\nthreading.local()\nprint('ok')\n")
    result = run_python_launched(script, options=["--report", "/proc/no/such/dir/r.json"])
    assert result.returncode == 0 and result.stdout == "ok\n"
    assert result.stderr.count("cannot write the report to /proc/no/such/dir/r.json") == 1


def test_malformed_settings_warn_once_and_the_program_runs(tmp_path: Path) -> None:
    script = write_script(tmp_path, "print('ok')\n")
    env = clean_env(LEAKAGENT_THRESHOLD="-4", LEAKAGENT_SUMMARY="loud")
    result = run_python_launched(script, env=env)
    assert result.returncode == 0 and result.stdout == "ok\n"
    assert result.stderr.count("LEAKAGENT_THRESHOLD='-4'") == 1
    assert result.stderr.count("LEAKAGENT_SUMMARY='loud'") == 1


def test_another_copy_of_our_sitecustomize_is_passed_over(tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    copy.mkdir()
    (copy / "sitecustomize.py").write_text(
        (Path(sitecustomize_dir()) / "sitecustomize.py").read_text()
    )
    user_dir = tmp_path / "user"
    user_dir.mkdir()
    write_script(user_dir, """
        import sys
        sys.stderr.write("user sitecustomize ran\\n")
    """, name="sitecustomize.py")
    script = write_script(tmp_path, PROBE)
    env = clean_env(PYTHONPATH=os.pathsep.join([str(copy), str(user_dir)]))
    result = run_container_mode([str(script)], env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "proxied\n"
    assert result.stderr.count("user sitecustomize ran") == 1


def test_the_program_sees_its_own_sys_path(tmp_path: Path) -> None:
    """The sitecustomize directory is on PYTHONPATH (child processes need it) but not on the
    program's sys.path: the same sys.path as without the agent, and no extra entry for every
    path search (importlib.metadata searches each entry, on every redis.Redis())."""
    script = write_script(tmp_path, """
        import json, os, subprocess, sys, threading
        counting = "__leakagent_counting__" in vars(threading.local)
        print(json.dumps([counting, sys.path]))
    """)
    user_dir = tmp_path / "user"
    user_dir.mkdir()
    env = clean_env(PYTHONPATH=str(user_dir))
    plain = subprocess.run([sys.executable, str(script)], env=env, capture_output=True,
                           text=True, timeout=60)
    assert plain.returncode == 0, plain.stderr
    expected = json.loads(plain.stdout)[1]
    assert str(user_dir) in expected
    for result in (run_python_launched(script, env=env),
                   run_container_mode([str(script)], env=env)):
        assert result.returncode == 0, result.stderr
        counting, path = json.loads(result.stdout)
        assert counting
        assert path == expected
