# ruff: noqa: E501
"""The host program behaves exactly as without the agent (issue 15): same output, plain and
under the agent, for programs that poke at the corners of ``threading.local``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import (
    IN_CI,
    clean_env,
    run_container_mode,
    run_python_launched,
    sitecustomize_dir,
    write_script,
)


def run_container_mode_with(
    python: str, args: list[str], env: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    """Container mode for another interpreter: the agent's directory (and src) on PYTHONPATH."""
    env = dict(env)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (sitecustomize_dir(), env.get("PYTHONPATH")) if p)
    return subprocess.run([python, *args], env=env, capture_output=True, text=True, timeout=120)

LOCAL_CORNERS = r'''
import _thread, copy, pickle, threading, types

def attempt(name, fn):
    try:
        value = fn()
    except Exception as exc:
        value = type(exc).__name__
    print(f"{name}: {value}")

class Meta(type):
    pass

def slots():
    class S(threading.local):
        __slots__ = ("a", "__dict__")
    s = S(); s.a = 1; s.b = 2
    return (s.a, s.b)

def metaclass_statement():
    class M2(threading.local, metaclass=Meta):
        pass
    return type(M2).__name__

def subclass():
    class C(threading.local):
        def __init__(self, v):
            self.v = v
    c = C(3); out = []
    t = threading.Thread(target=lambda: out.append(c.v)); t.start(); t.join()
    return (c.v, out, C.__mro__[1] is threading.local, isinstance(c, _thread._local))

attempt("type()", lambda: type(type("D", (threading.local,), {})()).__name__)
attempt("new_class", lambda: issubclass(types.new_class("E", (threading.local,), {}), threading.local))
attempt("metaclass call", lambda: type(Meta("M", (threading.local,), {})).__name__)
attempt("type(local)(...)", lambda: type(threading.local)("K", (threading.local,), {})().__class__.__name__)
attempt("slots with __dict__", slots)
attempt("class with metaclass", metaclass_statement)
attempt("isinstance(local, type)", lambda: isinstance(threading.local, type))
attempt("type(local)", lambda: type(threading.local).__name__)
attempt("names", lambda: (threading.local.__module__, threading.local.__name__, threading.local.__qualname__))
attempt("repr", lambda: repr(threading.local))
attempt("is _thread._local", lambda: threading.local is _thread._local)
attempt("type(instance) is local", lambda: type(threading.local()) is threading.local)
attempt("isinstance", lambda: isinstance(threading.local(), threading.local))
attempt("pickle class", lambda: pickle.loads(pickle.dumps(threading.local)) is threading.local)
attempt("copy class", lambda: copy.copy(threading.local) is threading.local is copy.deepcopy(threading.local))
attempt("pickle instance", lambda: pickle.dumps(threading.local()))
attempt("copy instance", lambda: copy.copy(threading.local()))
attempt("init args", lambda: threading.local(1))
attempt("instance dict", lambda: threading.local().__dict__)
attempt("subclass", subclass)
attempt("weakref", lambda: __import__("weakref").ref(threading.local()) is not None)
attempt("subclass of type(local())", lambda: type("Z", (type(threading.local()),), {})().__class__.__name__)
'''


def test_threading_local_corners_behave_as_without_the_agent(tmp_path: Path) -> None:
    script = write_script(tmp_path, LOCAL_CORNERS)
    plain = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                           env=clean_env(), timeout=60)
    assert plain.returncode == 0 and "TypeError" in plain.stdout  # the probe probes
    for result in (run_python_launched(script), run_container_mode([str(script)])):
        assert result.returncode == 0, result.stderr
        assert result.stdout == plain.stdout
        assert result.stderr == plain.stderr == ""


def run_plain(script: Path, *args: str, env: dict[str, str] | None = None,
              python: str = sys.executable) -> subprocess.CompletedProcess[str]:
    return subprocess.run([python, str(script), *args], capture_output=True, text=True,
                          env=env if env is not None else clean_env(), timeout=120)


REDIRECTED = '''
import contextlib, io, sys, threading

def churn():
    for _ in range(60):
        threading.local()

captured = io.StringIO()
with contextlib.redirect_stderr(captured):
    churn()                      # the first warning: the program's sys.stderr is redirected
print("captured:", repr(captured.getvalue()))
captured.close()
sys.stderr = io.StringIO()
sys.stderr.close()               # a closed sys.stderr at the next warning
for _ in range(60):
    threading.local()
sys.stderr = sys.__stderr__
print("done")
'''


def test_warnings_go_to_the_real_stderr_never_to_a_redirected_one(tmp_path: Path) -> None:
    script = write_script(tmp_path, REDIRECTED)
    plain = run_plain(script)
    assert plain.stdout == "captured: ''\ndone\n" and plain.stderr == ""
    result = run_python_launched(script, options=["--summary=never"])
    assert result.returncode == 0
    assert result.stdout == plain.stdout  # nothing of the agent's in the captured output
    lines = result.stderr.splitlines()
    assert len(lines) == 2, result.stderr  # both warnings, no "--- Logging error ---"
    assert all(line.startswith("leakagent: threading.local created ") for line in lines)


def test_every_warning_line_names_its_process(tmp_path: Path) -> None:
    script = write_script(tmp_path, '''
        import os, sys, threading
        if os.fork() == 0:
            for _ in range(60):
                threading.local()
            sys.stderr.flush()
            os._exit(0)
        os.wait()
        for _ in range(60):
            threading.local()
        print(os.getpid())
    ''', name="worker.py")
    result = run_python_launched(script, options=["--summary=never"])
    assert result.returncode == 0, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 2, result.stderr
    parent = int(result.stdout)
    tags = [line[line.rindex("[") :] for line in lines]
    assert tags[1] == f"[pid {parent} worker.py]"
    assert tags[0].startswith("[pid ") and tags[0] != tags[1] and tags[0].endswith(" worker.py]")
    assert all(line.startswith("leakagent: ") for line in lines)


FORK_WITHOUT_LOGGING = '''
import os, sys
pid = os.fork()
if pid == 0:
    os._exit(0)
os.waitpid(pid, 0)
import multiprocessing
if __name__ == "__main__":
    for method in ("spawn", "forkserver", "fork"):
        p = multiprocessing.get_context(method).Process(target=print, args=(method,))
        p.start()
        p.join()
    print("logging imported:", "logging" in sys.modules)
'''


def test_fork_prints_nothing_of_the_agents(tmp_path: Path) -> None:
    script = write_script(tmp_path, FORK_WITHOUT_LOGGING)
    plain = run_plain(script)
    assert plain.returncode == 0 and plain.stderr == ""
    for result in (run_python_launched(script), run_container_mode([str(script)])):
        assert result.returncode == 0, result.stderr
        assert result.stderr == ""  # was: RuntimeError: cannot release un-acquired lock
        assert result.stdout == plain.stdout


def test_a_python_without_leakagent_stays_silent(tmp_path: Path) -> None:
    """Container mode reaches every Python, one without leakagent installed too (item 7)."""
    shadow = tmp_path / "shadow" / "leakagent"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ImportError('not installed here')\n")
    script = write_script(tmp_path, "print('ran')\n")
    env = clean_env(PYTHONPATH=str(tmp_path / "shadow"))  # after the agent's directory
    result = run_container_mode([str(script)], env=env)
    assert (result.returncode, result.stdout, result.stderr) == (0, "ran\n", "")
    result = run_container_mode([str(script)], env=dict(env, LEAKAGENT_LOG_LEVEL="DEBUG"))
    assert result.stderr.startswith("leakagent: not loaded, cannot import it here")


def _agent_off_line(result: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("leakagent: warning:")]


def test_launcher_says_when_the_agent_cannot_load(tmp_path: Path) -> None:
    """-I/-E/-S behind env, sh -c or a #! line, and a sitecustomize put before the agent's."""
    from tests.helpers import run_launched

    probe = write_script(tmp_path, "import threading; print(threading.local.__dict__.get("
                         "'__leakagent_counting__', False))\n")
    tool = tmp_path / "tool.py"
    tool.write_text(f"#!{sys.executable} -Es\n" + probe.read_text())
    tool.chmod(0o755)
    user = tmp_path / "user"
    user.mkdir()
    (user / "sitecustomize.py").write_text("")
    before = f"{user}:{sitecustomize_dir()}"
    cases = [
        (["env", sys.executable, "-I", str(probe)], "-I stops Python"),
        (["sh", "-c", f"exec '{sys.executable}' -E '{probe}'"], "-E (in sh -c) stops Python"),
        ([str(tool)], "-E (in the #! line of"),
        (["env", f"PYTHONPATH={before}", sys.executable, str(probe)],
         f"the sitecustomize in {user} comes before the agent's on PYTHONPATH"),
    ]
    for command, expected in cases:
        result = run_launched(command)
        assert result.returncode == 0, result.stderr
        assert result.stdout == "False\n"  # the agent did not load...
        lines = _agent_off_line(result)
        assert len(lines) == 1 and expected in lines[0], (command, result.stderr)  # ...and said so
    loaded = run_launched(["sh", "-c", f"exec '{sys.executable}' '{probe}'"])
    assert loaded.stdout == "True\n" and _agent_off_line(loaded) == []


def _newer_pythons() -> list[str]:
    """Python 3.12 and 3.13 (which warn at a fork with threads), from PATH or pyenv."""
    import glob
    import shutil

    found = []
    for version in ("3.12", "3.13"):
        candidates = sorted(glob.glob(os.path.expanduser(f"~/.pyenv/versions/{version}*/bin/python")))
        on_path = shutil.which(f"python{version}") or ""
        if "/shims/" not in on_path:  # a pyenv shim may point nowhere
            candidates.append(on_path)
        chosen = next((c for c in candidates if c and os.access(c, os.X_OK)), None)
        if chosen is None and IN_CI:
            raise AssertionError(f"python{version} is needed for this test in CI")
        if chosen:
            found.append(chosen)
    return found


FORKS_SINGLE_THREADED = '''
import os, time
for _ in range(3):
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
print("forked")
'''


@pytest.mark.parametrize("python", [sys.executable, *_newer_pythons()])
def test_the_agents_threads_are_not_seen_at_fork(tmp_path: Path, python: str) -> None:
    """A single-threaded program forks under the agent, report and memory watcher on: no
    ``DeprecationWarning: This process ... is multi-threaded`` (Python 3.12, 3.13)."""
    script = write_script(tmp_path, FORKS_SINGLE_THREADED)
    src = str(Path(__file__).resolve().parents[2] / "src")
    env = clean_env(PYTHONPATH=src, LEAKAGENT_REPORT=str(tmp_path / "r.json"),
                    LEAKAGENT_MEMORY_LIMIT="4G", PYTHONWARNINGS="always")
    plain = run_plain(script, env=env, python=python)
    assert plain.returncode == 0 and plain.stderr == ""
    result = run_container_mode_with(python, [str(script)], env)
    assert result.returncode == 0
    assert result.stderr == "", result.stderr
    assert result.stdout == plain.stdout


def test_a_program_with_its_own_threads_still_gets_the_fork_warning(tmp_path: Path) -> None:
    """Only the agent's threads are hidden: the program's own are counted as without it."""
    pythons = _newer_pythons()
    if not pythons:
        if IN_CI:  # CI installs them (scripts/test-matrix): missing is a failure there
            raise AssertionError("no Python 3.12+ found")
        pytest.skip("no Python 3.12+ here")
    script = write_script(tmp_path, '''
        import os, threading, time
        threading.Thread(target=time.sleep, args=(2,), daemon=True).start()
        pid = os.fork()
        if pid == 0:
            os._exit(0)
        os.waitpid(pid, 0)
    ''')
    src = str(Path(__file__).resolve().parents[2] / "src")
    env = clean_env(PYTHONPATH=src, LEAKAGENT_REPORT=str(tmp_path / "r.json"))
    for python in pythons:
        plain = run_plain(script, env=env, python=python)
        result = run_container_mode_with(python, [str(script)], env)
        assert "is multi-threaded" in plain.stderr
        assert result.stderr.count("is multi-threaded") == 1


def test_the_periodic_report_goes_on_in_the_parent_after_a_fork(tmp_path: Path) -> None:
    report = tmp_path / "r.json"
    script = write_script(tmp_path, f'''
        import json, os, threading, time
        pid = os.fork()
        if pid == 0:
            os._exit(0)
        os.waitpid(pid, 0)
        keep = [threading.local() for _ in range(7)]  # AFTER FORK
        deadline = time.time() + 20
        while time.time() < deadline:
            try:
                sites = json.load(open({str(report)!r}))["sites"]
            except (OSError, ValueError, KeyError):
                sites = []
            if any(s.get("created") == 7 for s in sites):
                print("periodic report after the fork")
                break
            time.sleep(0.05)
    ''')
    result = run_python_launched(script, options=["--report", str(report),
                                                  "--report-interval", "0.2"])
    assert result.returncode == 0, result.stderr
    assert result.stdout == "periodic report after the fork\n"


def test_the_report_carries_no_secret_from_argv(tmp_path: Path) -> None:
    from tests.helpers import load_report

    script = write_script(tmp_path, "import sys, threading\nthreading.local()\nprint(sys.argv[1:])\n")
    args = ["--password=hunter2", "--token", "tok-abc", "DSN=redis://u:pw-xyz@h:6379/0", "-v"]
    report = tmp_path / "r.json"
    result = run_python_launched(script, *args, options=["--report", str(report)])
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"{args}\n"  # the program's own argv is untouched
    text = report.read_text()
    for secret in ("hunter2", "tok-abc", "pw-xyz"):
        assert secret not in text
    argv = load_report(report)["process"]["argv"]
    assert argv[1:] == ["--password=***", "--token", "***", "DSN=redis://u:***@h:6379/0", "-v"]
    full = run_python_launched(script, *args, options=["--report", str(report)],
                               env=clean_env(LEAKAGENT_ARGV="full"))
    assert full.returncode == 0 and load_report(report)["process"]["argv"][1:] == args
