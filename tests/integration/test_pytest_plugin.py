"""The pytest plugin, run for real with pytester in subprocesses (the agent is per process)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from tests.helpers import launcher

pytestmark = pytest.mark.timeout(300)

LEAKY = """
    import threading

    import pytest


    def make_local():
        return threading.local()  # LOCAL SITE


    def test_leaky():
        for _ in range(20):
            make_local()


    def test_fine():
        for _ in range(3):
            make_local()


    @pytest.mark.leakagent(threshold=100)
    def test_marked_threshold():
        for _ in range(20):
            make_local()


    @pytest.mark.leakagent(allow=["threading.local"])
    def test_marked_allow_kind():
        for _ in range(20):
            make_local()


    @pytest.mark.leakagent(allow="test_leaky_mod.py:{SITE}")
    def test_marked_allow_site():
        for _ in range(20):
            make_local()


    def test_one_per_thread():
        # 10 creations, one per thread alive at the same time: a per-thread cache.
        together = threading.Barrier(10)
        threads = [
            threading.Thread(target=lambda: (make_local(), together.wait())) for _ in range(10)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
"""

REQUESTS = """
    import requests

    SEEN = []
    def fetch(url):
        session = requests.Session()  # a new session, pool and adapters on every call
        SEEN.append(session)  # and every one is kept: retention
        return session


    def test_session_per_call():
        for _ in range(12):
            fetch("http://127.0.0.1:9/")
"""


SITE = textwrap.dedent(LEAKY).strip("\n").splitlines().index(
    "    return threading.local()  # LOCAL SITE"
) + 1
REQUESTS_SITE = 5


def _write(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_leaky_mod=textwrap.dedent(LEAKY).replace("{SITE}", str(SITE)))


def _env(pytester: pytest.Pytester) -> None:
    # A clean agent environment; contained agent errors raise (strict) in the runs too.
    for name in list(os.environ):
        if name.startswith("LEAKAGENT_") or name == "PYTHONPATH":
            pytester._monkeypatch.delenv(name)
    pytester._monkeypatch.setenv("LEAKAGENT_STRICT", "1")


def test_leaking_test_fails_with_the_report_message(pytester: pytest.Pytester) -> None:
    _env(pytester)
    _write(pytester)
    result = pytester.runpytest_subprocess("--leakagent", "--leakagent-threshold", "5")
    result.assert_outcomes(passed=5, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*leakagent: fails a test at 5 creations*(tracking: in-process)*",
            "*_ test_leaky _*",
            "leakagent: 1 call site created the same kind 5 or more times beyond one per thread "
            "during this test:",
            f"  threading.local created 20 times on thread MainThread at test_leaky_mod.py:{SITE} "
            "in make_local (churn) — a threading.local() created on every call caches "
            "nothing*",
            "*= leakagent =*",
            "1 suspect call site in 1 test:",
            "test_leaky_mod.py::test_leaky (failed)",
            "  1. threading.local — churn",
            f"     at test_leaky_mod.py:{SITE} in make_local",
            "     created 20 during the test on 1 thread (max 20 on MainThread, threshold 5)*",
            "     hint: a threading.local() created on every call caches nothing*",
        ]
    )


def test_plugin_is_off_unless_asked(pytester: pytest.Pytester) -> None:
    _env(pytester)
    _write(pytester)
    result = pytester.runpytest_subprocess("--leakagent-threshold", "5")
    result.assert_outcomes(passed=6)
    assert "= leakagent =" not in result.stdout.str()
    assert "tracking:" not in result.stdout.str()
    # -p no:leakagent removes it altogether; the marker is then unknown but harmless.
    result = pytester.runpytest_subprocess("-p", "no:leakagent")
    result.assert_outcomes(passed=6)


def test_ini_options_switch_it_on(pytester: pytest.Pytester) -> None:
    _env(pytester)
    _write(pytester)
    pytester.makeini("[pytest]\nleakagent = true\nleakagent_threshold = 5\n")
    result = pytester.runpytest_subprocess()
    result.assert_outcomes(passed=5, failed=1)
    result.stdout.fnmatch_lines(["FAILED test_leaky_mod.py::test_leaky - *leakagent*"])


def test_default_threshold_comes_from_the_agent_setting(pytester: pytest.Pytester) -> None:
    _env(pytester)
    _write(pytester)
    pytester._monkeypatch.setenv("LEAKAGENT_THRESHOLD", "15")
    result = pytester.runpytest_subprocess("--leakagent")
    result.assert_outcomes(passed=5, failed=1)
    result.stdout.fnmatch_lines(["*fails a test at 15 creations*"])


DEFAULTS = """
    import threading

    import requests


    def session():
        return requests.Session()  # SESSION SITE


    def test_twenty_sessions():
        for _ in range(20):
            session().close()


    def test_spread_over_threads():
        # 40 in all, 4 per thread on 10 threads: the same bug spread over a pool
        threads = [
            threading.Thread(target=lambda: [session().close() for _ in range(4)])
            for _ in range(10)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()


    def test_a_few_sessions():
        for _ in range(5):  # one per region: a small fixed set
            session().close()
"""


def test_default_fails_a_twenty_repetition_test(pytester: pytest.Pytester) -> None:
    _env(pytester)
    pytester.makepyfile(test_defaults_mod=textwrap.dedent(DEFAULTS))
    result = pytester.runpytest_subprocess("--leakagent")
    result.assert_outcomes(passed=1, failed=2)
    result.stdout.fnmatch_lines_random(
        [
            "*fails a test at 9 creations*",
            "FAILED test_defaults_mod.py::test_twenty_sessions - *leakagent*",
            "FAILED test_defaults_mod.py::test_spread_over_threads - *leakagent*",
        ]
    )


def test_a_real_client_per_call_fails(pytester: pytest.Pytester) -> None:
    _env(pytester)
    pytester.makepyfile(test_requests_mod=textwrap.dedent(REQUESTS))
    result = pytester.runpytest_subprocess("--leakagent", "--leakagent-threshold", "5")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "  requests.Session created 12 times on thread MainThread at "
            "test_requests_mod.py:5 in fetch (retention) — create it once and share it*"
        ]
    )


def test_with_xdist(pytester: pytest.Pytester) -> None:
    _env(pytester)
    _write(pytester)
    pytester.makepyfile(test_requests_mod=textwrap.dedent(REQUESTS))
    result = pytester.runpytest_subprocess(
        "-p", "xdist", "-n", "2", "--leakagent", "--leakagent-threshold", "5"
    )
    result.assert_outcomes(passed=5, failed=2)
    result.stdout.fnmatch_lines_random(
        [
            "*fails a test at 5 creations*(tracking: xdist workers)*",
            "2 suspect call sites in 2 tests:",
            "test_leaky_mod.py::test_leaky (failed)",
            "test_requests_mod.py::test_session_per_call (failed)",
            "     at test_requests_mod.py:5 in fetch",
            f"     at test_leaky_mod.py:{SITE} in make_local",
        ]
    )


def test_reuses_the_agent_under_the_launcher(pytester: pytest.Pytester) -> None:
    _env(pytester)
    _write(pytester)
    result = pytester.run(
        *launcher(),
        sys.executable,
        "-m",
        "pytest",
        "-p",
        "no:cacheprovider",
        "--leakagent",
        "--leakagent-threshold",
        "5",
        timeout=240,
    )
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(
        [
            "*(tracking: the running agent)*",
            f"  threading.local created 20 times on thread MainThread at test_leaky_mod.py:{SITE}*",
            "*1 failed, 5 passed*",
        ]
    )


def test_importing_the_entry_point_loads_nothing_else() -> None:
    # pytest imports the entry point in every run of every project: it must stay tiny.
    code = (
        "import sys; before = set(sys.modules); import leakagent.pytest_plugin.plugin; "
        "print(sorted(m for m in set(sys.modules) - before))"
    )
    out = subprocess.check_output([sys.executable, "-c", code], text=True).strip()
    loaded = set(eval(out))  # a printed list of module names
    # __future__ is loaded by pytest itself anyway.
    assert loaded - {"__future__"} == {
        "leakagent",
        "leakagent._version",
        "leakagent.pytest_plugin",
        "leakagent.pytest_plugin.plugin",
    }
