"""Missing pieces degrade the agent, never the program: one warning, the report still works."""

from __future__ import annotations

from pathlib import Path

from tests.helpers import clean_env, load_report, run_python_launched, write_script


def fake_package(root: Path, name: str, source: str) -> None:
    package = root / name
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(source)


def test_old_wrapt_counts_locals_and_says_so_once(tmp_path: Path) -> None:
    fakes = tmp_path / "fakes"
    fake_package(fakes, "wrapt", "__version__ = '1.10.0'\nclass FunctionWrapper: pass\n")
    script = write_script(tmp_path, """
        import threading, requests, urllib3
        for _ in range(20):
            requests.Session()
            threading.local()
        print("ok")
    """)
    env = clean_env(PYTHONPATH=str(fakes))
    result = run_python_launched(script, env=env, options=["--report", str(tmp_path / "r.json"),
                                                           "--threshold", "10"])
    assert result.returncode == 0 and result.stdout == "ok\n", result.stderr
    assert result.stderr.count("client constructors are not counted: wrapt 1.10.0 is too old") == 1
    kinds = {s["kind"] for s in load_report(tmp_path / "r.json")["suspects"]}
    assert kinds == {"threading.local"}


def test_library_version_the_catalog_does_not_know(tmp_path: Path) -> None:
    fakes = tmp_path / "fakes"
    fake_package(fakes, "redis", "__version__ = '99.0'\nclass Client:\n    pass\n")
    script = write_script(tmp_path, """
        import redis, threading
        for _ in range(20):
            redis.Client()
            threading.local()
        print("ok")
    """)
    env = clean_env(PYTHONPATH=str(fakes))
    result = run_python_launched(script, env=env, options=["--report", str(tmp_path / "r.json"),
                                                           "--threshold", "10"])
    assert result.returncode == 0 and result.stdout == "ok\n", result.stderr
    assert result.stderr.count("redis.Redis is not counted: redis.Redis.__init__ was not found "
                               "as expected in redis 99.0") == 1
    assert {s["kind"] for s in load_report(tmp_path / "r.json")["suspects"]} == {
        "threading.local"
    }
