"""What the launcher can tell about a command line that will not load the agent."""

from __future__ import annotations

import os
from pathlib import Path

from leakagent.tools.launchcheck import is_python, problem


def test_python_names() -> None:
    assert is_python("python") and is_python("/usr/bin/python3.12") and is_python("pypy3")
    assert not is_python("pythonista") and not is_python("gunicorn") and not is_python("python3 -E")


def test_flags_directly_behind_env_and_in_sh_c(tmp_path: Path) -> None:
    agent = str(tmp_path)
    assert "-I stops Python" in (problem(["python", "-I", "app.py"], agent) or "")
    assert problem(["python", "app.py", "-E"], agent) is None
    assert "-E stops" in (problem(["env", "FOO=1", "-C", "/", "python3", "-E", "x.py"], agent) or "")
    assert "-S stops" in (problem(["env", "-S", "python3 -S x.py"], agent) or "")
    found = problem(["sh", "-c", "cd /tmp && exec python3 -Es app.py"], agent) or ""
    assert "-E (in sh -c) stops Python" in found
    assert problem(["bash", "-c", "echo 'python -E'; python app.py"], agent) is None
    assert problem(["sh", "-c", "unbalanced 'quote"], agent) is None
    assert problem(["gunicorn", "-E", "app"], agent) is None


def test_env_that_drops_or_replaces_pythonpath(tmp_path: Path) -> None:
    agent = tmp_path / "agent"
    user = tmp_path / "user"
    for directory in (agent, user):
        directory.mkdir()
        (directory / "sitecustomize.py").write_text("")
    assert "env -i" in (problem(["env", "-i", "python", "x.py"], str(agent)) or "")
    assert "env -u PYTHONPATH" in (problem(["env", "-u", "PYTHONPATH", "python"], str(agent)) or "")
    before = os.pathsep.join([str(user), str(agent)])
    found = problem(["env", f"PYTHONPATH={before}", "python", "x.py"], str(agent)) or ""
    assert f"the sitecustomize in {user} comes before the agent's" in found
    after = os.pathsep.join([str(agent), str(user)])
    assert problem(["env", f"PYTHONPATH={after}", "python", "x.py"], str(agent)) is None
    found = problem(["sh", "-c", f"PYTHONPATH={user} python x.py"], str(agent)) or ""
    assert "comes before the agent's on PYTHONPATH (set in sh -c)" in found
    assert "does not contain" in (problem(["env", "PYTHONPATH=/x", "python"], str(agent)) or "")


def test_shebang_flags(tmp_path: Path) -> None:
    tool = tmp_path / "tool.py"
    tool.write_text("#!/usr/bin/python3 -Es\nprint(1)\n")
    found = problem([str(tool)], str(tmp_path), str(tool)) or ""
    assert f"-E (in the #! line of {tool}) stops Python" in found
    tool.write_text("#!/usr/bin/env -S python3 -I\nprint(1)\n")
    assert "-I" in (problem([str(tool)], str(tmp_path), str(tool)) or "")
    tool.write_text("#!/usr/bin/env python3\nprint(1)\n")
    assert problem([str(tool)], str(tmp_path), str(tool)) is None
    binary = tmp_path / "binary"
    binary.write_bytes(b"\x7fELF\x00")
    assert problem([str(binary)], str(tmp_path), str(binary)) is None
