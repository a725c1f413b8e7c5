"""Launcher helpers: PYTHONPATH editing and flags that stop sitecustomize."""

from __future__ import annotations

import os

from leakagent.tools.cli import python_flags_blocking_agent, with_pythonpath

SEP = os.pathsep


def test_pythonpath_unset_gets_only_our_dir() -> None:
    assert with_pythonpath(None, "/agent") == "/agent"
    assert with_pythonpath("", "/agent") == "/agent"


def test_pythonpath_keeps_user_entries_and_drops_duplicates() -> None:
    current = SEP.join(["/a", "/agent", "/b", "/agent/"])
    assert with_pythonpath(current, "/agent") == SEP.join(["/agent", "/a", "/b"])


def test_pythonpath_when_ours_is_the_only_or_last_entry() -> None:
    assert with_pythonpath("/agent", "/agent") == "/agent"
    assert with_pythonpath(SEP.join(["/x", "/agent"]), "/agent") == SEP.join(["/agent", "/x"])


def test_flags_that_stop_the_agent() -> None:
    assert python_flags_blocking_agent(["python", "-E", "app.py"]) == ["-E"]
    assert python_flags_blocking_agent(["python3.11", "-IS", "app.py"]) == ["-I", "-S"]
    assert python_flags_blocking_agent(["/usr/bin/python3", "-u", "-c", "pass"]) == []
    assert python_flags_blocking_agent(["python", "-X", "dev", "-E", "x.py"]) == ["-E"]
    assert python_flags_blocking_agent(["python", "app.py", "-E"]) == []
    assert python_flags_blocking_agent(["python", "-c", "-E"]) == []
    assert python_flags_blocking_agent(["gunicorn", "-E"]) == []
