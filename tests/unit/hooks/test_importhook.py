"""Post-import hooks without wrapt."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from leakagent.core import guard
from leakagent.hooks import importhook


@pytest.fixture
def package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    name = f"la_pkg_{abs(hash(tmp_path)) % 10**8}"
    root = tmp_path / name
    root.mkdir()
    (root / "__init__.py").write_text("VALUE = 1\n")
    (root / "sub.py").write_text("import importlib.resources\nLOADER_OK = True\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield name
    for key in [k for k in sys.modules if k == name or k.startswith(name + ".")]:
        del sys.modules[key]


def test_hook_runs_after_import(package: str) -> None:
    seen = []
    importhook.when_imported(package, lambda m: seen.append(m.VALUE))
    assert seen == []
    __import__(package)
    assert seen == [1]
    assert package not in importhook.pending()


def test_hook_runs_at_once_when_already_imported(package: str) -> None:
    module = __import__(package)
    seen = []
    importhook.when_imported(package, seen.append)
    assert seen == [module]


def test_submodule_hook_and_original_loader_restored(package: str) -> None:
    seen = []
    importhook.when_imported(f"{package}.sub", seen.append)
    __import__(f"{package}.sub")
    module = sys.modules[f"{package}.sub"]
    assert seen == [module]
    assert type(module.__loader__).__name__ != "_HookedLoader"
    assert type(module.__spec__.loader).__name__ != "_HookedLoader"


@pytest.mark.expect_agent_errors
def test_failing_hook_does_not_break_the_import(
    package: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(guard, "STRICT", False)

    def broken(module: object) -> None:
        raise RuntimeError("boom")

    importhook.when_imported(package, broken)
    module = __import__(package)
    assert module.VALUE == 1


def test_missing_module_import_error_unchanged() -> None:
    importhook.when_imported("la_no_such_module_xyz", lambda m: None)
    with pytest.raises(ModuleNotFoundError):
        __import__("la_no_such_module_xyz")


@pytest.mark.parametrize("stdlib_by", ["name", "origin (Python 3.9)"])
@pytest.mark.parametrize("outer_is_a_dependency", [True, False])
def test_hooks_wait_for_the_outermost_import_of_a_dependency(
    outer_is_a_dependency: bool, stdlib_by: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A hook imports wrapt and logging (standard library): it must not run inside their
    # half-finished import (item 9). A watched module imported by the program's own module
    # still runs its hooks at once, before the importer goes on.
    outer = f"la_outer_{abs(hash(tmp_path)) % 10**8}"
    inner = f"la_inner_{abs(hash(tmp_path)) % 10**8}"
    (tmp_path / f"{outer}.py").write_text(f"import {inner}\nDONE = True\n")
    (tmp_path / f"{inner}.py").write_text("VALUE = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    if stdlib_by != "name":
        monkeypatch.setattr(importhook, "_STDLIB_NAMES", None)
    if outer_is_a_dependency:
        monkeypatch.setattr(importhook, "_AGENT_PACKAGES", (*importhook._AGENT_PACKAGES, outer))
    seen = []
    importhook.when_imported(
        inner, lambda m: seen.append(getattr(sys.modules[outer], "DONE", False))
    )
    try:
        __import__(outer)
        assert seen == [outer_is_a_dependency]
        assert not importhook._depth and not importhook._deferred
    finally:
        for name in (outer, inner):
            sys.modules.pop(name, None)
