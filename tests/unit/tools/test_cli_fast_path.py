"""The launcher's fast path reads the common form exactly as argparse does, without it."""

from __future__ import annotations

import subprocess
import sys

import pytest

from leakagent.core.config import SUMMARY_MODES
from leakagent.tools import cli

FAST = [
    ["python", "app.py", "--threshold", "x"],
    ["--report", "r.json", "python", "app.py"],
    ["--report=r.json", "--threshold", "7", "--summary", "always", "python", "-c", "pass"],
    ["--no-locals", "--no-clients", "--disable", "--log-level", "DEBUG", "gunicorn", "app"],
    ["--report-interval", "0.5", "--max-sites=20", "./tool.py", "--report", "inner"],
]
SLOW = [
    [], ["--"], ["--", "python"], ["--help"], ["--version"], ["--sitecustomize-dir"],
    ["--threshold", "abc", "python"], ["--summary", "sometimes", "python"],
    ["--rep", "r.json", "python"], ["--otlp", "python"], ["--fail-on-suspect", "python"],
    ["--target", "m:C", "python"], ["--report"], ["--report", "--no-locals", "python"],
    ["--threshold", "5"],
]


@pytest.mark.parametrize("arguments", FAST)
def test_fast_path_reads_what_argparse_reads(arguments: list[str]) -> None:
    fast = cli._fast_options(arguments)
    assert fast is not None
    parser = cli._parser()
    slow = parser.parse_args(cli._optional_values(parser, arguments))
    for name in cli._FAST_DEFAULTS:
        assert getattr(fast, name) == getattr(slow, name), name
    assert fast.command == slow.command


@pytest.mark.parametrize("arguments", SLOW)
def test_everything_else_goes_to_argparse(arguments: list[str]) -> None:
    assert cli._fast_options(arguments) is None


def test_summary_modes_match_the_configuration() -> None:
    assert cli.FAST_SUMMARY_MODES == SUMMARY_MODES


def test_the_fast_path_imports_neither_argparse_nor_re_nor_shutil() -> None:
    code = (
        "import sys; before = set(sys.modules)\n"
        "from leakagent.tools import cli\n"
        "cli._fast_options(['--report', 'r.json', 'python', 'app.py'])\n"
        "cli._which('python3')\n"
        "print(sorted({'argparse', 're', 'shutil'} & (set(sys.modules) - before)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout == "[]\n"


def test_which_finds_what_shutil_finds() -> None:
    import shutil

    for name in ("python3", "sh", "env", "no-such-command-here", "/bin/sh", "/etc"):
        assert cli._which(name) == shutil.which(name), name
