"""Odd environments: python -m, zipapp, gevent and eventlet monkey patching."""

from __future__ import annotations

import subprocess
import sys
import zipapp
from pathlib import Path

import pytest

from tests.helpers import load_report, run_python_launched, write_script


def test_python_dash_m(tmp_path: Path) -> None:
    package = tmp_path / "svc"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "__main__.py").write_text(
        "import threading\nfor _ in range(20):\n    threading.local()  # HERE\n"
    )
    result = subprocess.run(
        [*run_args(tmp_path), sys.executable, "-m", "svc"],
        cwd=tmp_path, env=env_with_path(), capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stderr
    (site,) = load_report(tmp_path / "r.json")["suspects"]
    assert site["file"] == str(package / "__main__.py") and site["line"] == 3


def run_args(tmp_path: Path) -> list[str]:
    from tests.helpers import launcher

    return [*launcher(), "--report", str(tmp_path / "r.json"), "--threshold", "10"]


def env_with_path() -> dict[str, str]:
    from tests.helpers import clean_env

    return clean_env()


def test_zipapp(tmp_path: Path) -> None:
    source = tmp_path / "src"
    source.mkdir()
    (source / "__main__.py").write_text(
        "import threading\nfor _ in range(20):\n    threading.local()\nprint('zipped')\n"
    )
    archive = tmp_path / "app.pyz"
    zipapp.create_archive(source, archive)
    result = subprocess.run([*run_args(tmp_path), sys.executable, str(archive)],
                            env=env_with_path(), capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "zipped\n"
    (site,) = load_report(tmp_path / "r.json")["suspects"]
    assert site["file"].endswith("app.pyz/__main__.py") and site["line"] == 3


@pytest.mark.parametrize("library", ["gevent", "eventlet"])
def test_green_threads_program_still_works_and_clients_are_counted(
    library: str, tmp_path: Path
) -> None:
    patch = {
        "gevent": "from gevent import monkey; monkey.patch_all()",
        "eventlet": "import eventlet; eventlet.monkey_patch()",
    }[library]
    script = write_script(tmp_path, f"""
        import warnings; warnings.simplefilter("ignore")
        {patch}
        import threading, requests
        def task():
            requests.Session().close()  # CREATE
        threads = [threading.Thread(target=task) for _ in range(30)]
        for t in threads: t.start()
        for t in threads: t.join()
        local = threading.local()
        local.x = 1
        print("ok", local.x)
    """)
    result = run_python_launched(script, options=["--report", str(tmp_path / "r.json"),
                                                  "--threshold", "10"])
    assert result.returncode == 0, result.stderr
    assert result.stdout == "ok 1\n"
    report = load_report(tmp_path / "r.json")
    sessions = [s for s in report["sites"] if s["kind"] == "requests.Session"]
    assert sum(s["created"] for s in sessions) == 30
