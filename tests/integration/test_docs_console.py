"""Every console block of README.md and docs/ is a command and its output, checked here.

A block fenced with ```console holds ``$ command`` lines, each followed by what it prints
(stdout and stderr as a terminal shows them). This test runs the blocks of each file in
order, in one scratch directory holding a copy of ``examples/`` (so a later block can read
what an earlier one wrote), and compares modulo what changes from run to run: pids, times,
sizes, thread numbers, counts per thread, paths of the scratch directory, the order of
warnings that different threads print at once. A line ``...``
stands for any number of lines (a chart, a long listing).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import EXAMPLES, ROOT, clean_env

pytestmark = pytest.mark.timeout(600)

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

_VARYING = [
    (re.compile(r"/tmp/leakagent-gate-\w+/report\.\d+\.json"), "<temporary report>"),
    (re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z"), "<time>"),
    (re.compile(r"\bpid \d+"), "pid <pid>"),
    (re.compile(r"\(pid \d+\)"), "(pid <pid>)"),
    (re.compile(r"~?\d+(\.\d+)? (B|kB|MB|GB|KiB|MiB|GiB)\b"), "<size>"),
    (re.compile(r"\b\d+(\.\d+)?s\b"), "<seconds>"),
    (re.compile(r"\b(\d+h)?\d+m\d\ds\b"), "<seconds>"),
    (re.compile(r"ThreadPoolExecutor-\d+_\d+"), "<thread>"),
    (re.compile(r"max \d+ on"), "max <n> on"),
    # how many threads had made them when the site was flagged depends on the scheduling
    (re.compile(r"created \d+ times on \d+ threads \(\d+ alive at a time\)"),
     "created <n> times on <threads>"),
    (re.compile(r"created \d+ times on thread \S+"), "created <n> times on <threads>"),
    (re.compile(r"flagged after \d+ creations"), "flagged after <n> creations"),
    (re.compile(r"\(peak \d+\)"), "(peak <n>)"),
    (re.compile(r"\d+ points"), "<n> points"),
    (re.compile(r"python 3\.\d+\.\d+"), "python <version>"),
    (re.compile(r"leakagent \d+\.\d+\.\d+"), "leakagent <version>"),
    (re.compile(r" +$", re.M), ""),
    # a warning carries the memory estimate only once the report writer has made it
    (re.compile(r"\((churn|retention), <size> each, <size> live\)"), r"(\1)"),
    # a churning site has an estimate only if one of its instances was alive when measured
    (re.compile(r"^ +memory: <size> each, <size> live \(estimate\)\n", re.M), ""),
    (re.compile(r" \(<size> each, <size> live\)$", re.M), ""),
]


_WARNING = re.compile(r"^leakagent: .* created \S+ times on ")


def _sort_warnings(text: str) -> str:
    """Warnings printed in a row by different threads come in any order: sort each run."""
    out: list[str] = []
    run: list[str] = []
    for line in text.split("\n"):
        if _WARNING.match(line):
            run.append(line)
            continue
        out.extend(sorted(run))
        run = []
        out.append(line)
    out.extend(sorted(run))
    return "\n".join(out)


def normalize(text: str, scratch: Path) -> str:
    text = text.replace(str(scratch) + os.sep, "").replace(str(scratch), ".")
    for pattern, replacement in _VARYING:
        text = pattern.sub(replacement, text)
    return _sort_warnings(text)


def console_blocks(path: Path) -> list[tuple[int, str, str]]:
    """(line number, command, expected output) of every ``$`` line of the file's console blocks."""
    found: list[tuple[int, str, str]] = []
    inside = False
    current: list[str] = []
    start = 0
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if line.startswith("```"):
            if inside:
                found.extend(_commands(current, start))
            inside = line.strip() == "```console"
            current, start = [], number + 1
        elif inside:
            current.append(line)
    return found


def _commands(lines: list[str], start: int) -> list[tuple[int, str, str]]:
    out: list[tuple[int, str, str]] = []
    for offset, line in enumerate(lines):
        if line.startswith("$ "):
            out.append((start + offset, line[2:], ""))
        elif out:
            number, command, expected = out[-1]
            out[-1] = (number, command, expected + line + "\n")
    return out


def matches(expected: str, actual: str) -> bool:
    """``expected`` (with ``...`` lines for any lines) against the whole ``actual``."""
    parts = []
    for line in expected.rstrip("\n").split("\n"):
        parts.append(r"(?:[^\n]*\n)*?" if line == "..." else re.escape(line) + r"\n")
    return re.fullmatch("".join(parts) + r"(?:\n)*", actual.rstrip("\n") + "\n") is not None


def run(command: str, scratch: Path) -> str:
    env = clean_env(PYTHONUNBUFFERED="1", COLUMNS="100")
    env.pop("CI", None)  # the docs show a person's terminal (pytest truncates less in CI)
    env["PATH"] = os.pathsep.join([os.path.dirname(sys.executable), env.get("PATH", "")])
    result = subprocess.run(
        ["bash", "-c", command], cwd=scratch, env=env, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True, timeout=300,
    )
    return result.stdout


def test_the_docs_have_console_blocks() -> None:
    assert sum(len(console_blocks(path)) for path in DOCS) >= 6


@pytest.mark.parametrize("doc", [d for d in DOCS if console_blocks(d)], ids=lambda d: d.name)
def test_console_block_output_is_what_the_command_prints(doc: Path, tmp_path: Path) -> None:
    shutil.copytree(EXAMPLES, tmp_path / "examples")
    failures = []
    for number, command, expected in console_blocks(doc):
        actual = normalize(run(command, tmp_path), tmp_path)
        if not matches(normalize(expected, tmp_path), actual):
            failures.append(
                f"{doc.name}:{number}: $ {command}\n--- documented:\n{expected}"
                f"--- printed (normalized):\n{actual}"
            )
    assert not failures, "\n\n".join(failures)
