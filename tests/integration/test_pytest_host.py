"""A pytest run is the same with the agent loaded (container mode) as without (issue 15 item 5).

pytest marks the top-level modules of every distribution with a ``pytest11`` entry point for
assertion rewriting and warns when one is already imported, which the agent's always is: under
a project's ``filterwarnings = ["error"]`` (urllib3's, httpx's) that warning stopped pytest
before it collected a test.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import re
import subprocess
import sys
from pathlib import Path

import pytest
from _pytest.config import _iter_rewritable_modules

from tests.helpers import clean_env, run_container_mode, write_script

PROJECT_CONFIG = """
[tool.pytest.ini_options]
filterwarnings = ["error"]
"""

TESTS = """
import threading

def test_passes():
    assert threading.local() is not None

def test_fails_with_rewritten_detail():
    value = [1, 2]
    assert value == [1, 3]

def test_subclass():
    class Ctx(threading.local):
        pass
    assert isinstance(Ctx(), threading.local)
"""


def _normalised(output: str) -> str:
    return re.sub(r"in [0-9.]+s", "in Ts", output)


@pytest.mark.parametrize("extra", [[], ["-p", "no:leakagent"]])
def test_pytest_run_is_the_same_with_the_agent_loaded(tmp_path: Path, extra: list[str]) -> None:
    (tmp_path / "pyproject.toml").write_text(PROJECT_CONFIG)
    write_script(tmp_path, TESTS, name="test_things.py")
    args = ["-m", "pytest", "-rA", "-p", "no:cacheprovider", *extra]
    plain = subprocess.run([sys.executable, *args], cwd=tmp_path, env=clean_env(),
                           capture_output=True, text=True, timeout=120)
    assert plain.returncode == 1, plain.stdout  # one test fails on purpose
    assert "assert [1, 2] == [1, 3]" in plain.stdout
    loaded = run_container_mode(args, cwd=tmp_path)
    assert loaded.returncode == plain.returncode, loaded.stdout + loaded.stderr
    assert _normalised(loaded.stdout) == _normalised(plain.stdout)
    assert loaded.stderr == plain.stderr
    assert "warning" not in loaded.stdout.lower()


def test_every_module_pytest_marks_for_rewriting_says_dont_rewrite() -> None:
    """Both installed forms: the wheel (``leakagent``), an editable install (``sitecustomize``)."""
    dist = importlib.metadata.distribution("leakagent")
    installed = [str(f) for f in dist.files or []]
    wheel = ["leakagent/__init__.py", "leakagent/_sitecustomize/sitecustomize.py",
             "leakagent-0.1.0.dist-info/METADATA"]
    editable = ["_editable_impl_leakagent.pth", "leakagent/_sitecustomize/sitecustomize.py",
                "leakagent-0.1.0.dist-info/METADATA"]
    names = {n for files in (installed, wheel, editable) for n in _iter_rewritable_modules(files)}
    assert names >= {"leakagent", "sitecustomize"}
    for name in names:
        if name == "sitecustomize":
            source = (Path(__file__).resolve().parents[2] / "sitecustomize" / "sitecustomize.py")
            doc = source.read_text()[:1500]
        else:
            doc = importlib.import_module(name).__doc__ or ""
        assert "PYTEST_DONT_REWRITE" in doc, name
