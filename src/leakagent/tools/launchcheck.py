"""What in a launched command line keeps the agent from loading, where the launcher can know it.

Python's ``-E``, ``-I`` and ``-S`` skip sitecustomize (or PYTHONPATH); ``env -i`` and
``env -u PYTHONPATH`` drop the agent's directory; a ``PYTHONPATH=...`` set by ``env`` or a
shell, or a program's own ``sitecustomize`` placed before the agent's, runs instead of it. These
are found directly on the command line, behind ``env``, inside ``sh -c '...'`` and in a
script's ``#!`` line. A Python that cannot import leakagent says nothing
(its sitecustomize stays silent) and cannot be known from here.
"""

from __future__ import annotations

import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Optional

_FLAGS_WITH_ARG = frozenset("WXQ")
_SHELLS = frozenset(("sh", "bash", "dash", "zsh", "ksh", "ash", "busybox"))
_SEPARATORS = frozenset((";", "&&", "||", "|", "&", "(", ")", "\n"))


def is_python(word: str) -> bool:
    """``python``, ``python3``, ``python3.12``, ``pypy3``... (a path's last part)."""
    name = os.path.basename(word)
    if name.endswith(".exe"):
        name = name[:-4]
    for prefix in ("python", "pypy"):
        if name.startswith(prefix):
            rest = name[len(prefix) :]
            return all(c.isdigit() or c == "." for c in rest)
    return False


def python_flags_blocking_agent(argv: Sequence[str]) -> list[str]:
    """The ``-E``/``-I``/``-S`` flags of a Python command line (they stop sitecustomize)."""
    if not argv or not is_python(argv[0]):
        return []
    found = []
    args = iter(argv[1:])
    for arg in args:
        if arg == "--" or not arg.startswith("-") or arg == "-" or arg.startswith("--"):
            break
        letters = arg[1:]
        for index, letter in enumerate(letters):
            if letter in "EIS":
                found.append(f"-{letter}")
            if letter in "cm":
                return found
            if letter in _FLAGS_WITH_ARG:
                if index == len(letters) - 1:
                    next(args, None)
                break
    return found


def _flags_problem(flags: list[str], where: str) -> str:
    return (
        f"{' '.join(flags)}{where} stops Python from running sitecustomize: "
        "the agent will not load in this process"
    )


def pythonpath_problem(value: str, agent_dir: str, where: str) -> Optional[str]:
    """Why a PYTHONPATH set by the command keeps the agent from loading, or None."""
    ours = os.path.normcase(os.path.realpath(agent_dir))
    for entry in value.split(os.pathsep):
        if not entry:
            continue
        try:
            real = os.path.normcase(os.path.realpath(entry))
        except (OSError, ValueError):
            continue
        if real == ours:
            return None
        if os.path.isfile(os.path.join(entry, "sitecustomize.py")) or os.path.isdir(
            os.path.join(entry, "sitecustomize")
        ):
            return (
                f"the sitecustomize in {entry} comes before the agent's on PYTHONPATH{where}: "
                "it runs instead, and the agent will not load"
            )
    return (
        f"PYTHONPATH{where} does not contain the agent's directory: the agent will not load "
        "(keep $(leakagent --sitecustomize-dir) first in it)"
    )


def problem(
    command: Sequence[str], agent_dir: str, executable: Optional[str] = None
) -> Optional[str]:
    """The first reason the agent will not load in ``command``, or None when none is known."""
    return _problem(list(command), agent_dir, executable, depth=0)


def _problem(
    command: list[str], agent_dir: str, executable: Optional[str], depth: int
) -> Optional[str]:
    if not command or depth > 4:
        return None
    name = os.path.basename(command[0])
    if is_python(command[0]):
        flags = python_flags_blocking_agent(command)
        return _flags_problem(flags, "") if flags else None
    if name == "env":
        return _env_problem(command[1:], agent_dir, depth)
    if name in _SHELLS:
        return _shell_problem(command[1:], agent_dir, depth)
    return _shebang_problem(command, agent_dir, executable, depth)


def _env_problem(args: list[str], agent_dir: str, depth: int) -> Optional[str]:
    index = 0
    while index < len(args):
        arg = args[index]
        if arg in ("-i", "--ignore-environment", "-"):
            return "env -i clears the environment (PYTHONPATH too): the agent will not load"
        if arg in ("-u", "--unset") or arg.startswith("--unset="):
            name = arg.split("=", 1)[1] if "=" in arg else (args[index + 1:index + 2] or [""])[0]
            if name == "PYTHONPATH":
                return "env -u PYTHONPATH drops the agent's directory: the agent will not load"
            index += 1 if "=" in arg else 2
            continue
        if arg in ("-S", "--split-string") and index + 1 < len(args):
            return _env_problem([*args[index + 1].split(), *args[index + 2 :]], agent_dir, depth)
        if arg.startswith(("-S ", "--split-string=")):  # a #! line gives "-S python3 -E" whole
            text = arg[3:] if arg.startswith("-S ") else arg.split("=", 1)[1]
            return _env_problem([*text.split(), *args[index + 1 :]], agent_dir, depth)
        if arg in ("-C", "--chdir"):
            index += 2
            continue
        if arg.startswith("-"):
            index += 1
            continue
        if "=" in arg:
            key, value = arg.split("=", 1)
            if key == "PYTHONPATH":
                found = pythonpath_problem(value, agent_dir, " (set by env)")
                if found:
                    return found
            index += 1
            continue
        break
    return _problem(args[index:], agent_dir, None, depth + 1)


def _shell_problem(args: list[str], agent_dir: str, depth: int) -> Optional[str]:
    """``sh -c 'SCRIPT'``: each simple command of SCRIPT, as far as shlex can tell."""
    script = None
    for index, arg in enumerate(args):
        if arg == "-c" or (arg.startswith("-") and not arg.startswith("--") and "c" in arg):
            script = args[index + 1] if index + 1 < len(args) else None
            break
        if not arg.startswith("-"):
            return None  # sh SCRIPTFILE: not read here
    if not script:
        return None
    import shlex

    try:
        lexer = shlex.shlex(script, posix=True, punctuation_chars=";&|()")
        lexer.whitespace_split = True
        tokens = list(lexer)
    except ValueError:
        return None
    commands: list[list[str]] = [[]]
    for token in tokens:
        if token in _SEPARATORS or set(token) <= set(";&|()"):
            commands.append([])
        else:
            commands[-1].append(token)
    for words in commands:
        while words and words[0] in ("exec", "command", "nohup", "time"):
            words = words[1:]
        assigned = []
        while words and "=" in words[0] and not words[0].startswith(("-", "=")):
            assigned.append(words[0])
            words = words[1:]
        if not words:
            continue
        for assignment in assigned:
            key, value = assignment.split("=", 1)
            if key == "PYTHONPATH" and (is_python(words[0]) or os.path.basename(words[0]) == "env"):
                found = pythonpath_problem(value, agent_dir, " (set in sh -c)")
                if found:
                    return found
        found = _problem(words, agent_dir, None, depth + 1)
        if found:
            return found.replace(" stops Python", " (in sh -c) stops Python", 1)
    return None


def _shebang_problem(
    command: list[str], agent_dir: str, executable: Optional[str], depth: int
) -> Optional[str]:
    """A script run directly: its ``#!`` line names the interpreter and its flags."""
    path = executable or command[0]
    try:
        with open(path, "rb") as handle:
            head = handle.read(256)
    except OSError:
        return None
    if not head.startswith(b"#!"):
        return None
    line = head[2:].split(b"\n", 1)[0].decode("utf-8", "replace").strip()
    interpreter, _, rest = line.partition(" ")
    rest = rest.strip()
    # Linux passes everything after the interpreter as one argument.
    argv = [interpreter, *([rest] if rest else []), path]
    found = _problem(argv, agent_dir, None, depth + 1)
    if found:
        return found.replace(" stops Python", f" (in the #! line of {command[0]}) stops Python", 1)
    return None
