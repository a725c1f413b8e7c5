"""The CI gate: ``leakagent --fail-on-suspect[=CODE] COMMAND``.

The normal launcher ``exec``s the command. The gate cannot: something has to look at the
outcome once the command has ended. So the launcher forks; the child sets itself as the root
process of the run (as ``exec`` would) and ``exec``s the command; the launcher forwards the
signals it receives, waits, then reads the JSON report of every Python process of the run
(each agent wrote its own, periodically and at exit) and decides the exit code:

* the command failed (non-zero exit): its code, whatever was found — the program's own
  failure wins; killed by signal N: ``128 + N``, as a shell reports it;
* the command succeeded and some report lists a suspect: ``CODE`` (default
  :data:`EXIT_SUSPECTS`);
* otherwise 0.

Why the launcher and not the agent's own exit hook: the exit status of a Python program is
not visible from ``atexit``, an exit hook cannot see suspects in the program's child
processes, and a process killed by a signal runs no exit hook at all; the reports cover all
three. See ``docs/ci-gate.md``.
"""

from __future__ import annotations

import os
import sys

from leakagent.outputs import report as report_mod

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence
    from types import FrameType
    from typing import Any, Optional

EXIT_SUSPECTS = 86
"""Exit code of a successful run in which suspects were found (``--fail-on-suspect``)."""

FORWARDED = ("SIGTERM", "SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2", "SIGINT")


def parse_code(value: str) -> Optional[int]:
    """An exit code 1-255 from the option's value, None if it is not one."""
    if value.isdigit() and 1 <= int(value) <= 255:
        return int(value)
    return None


def _from_terminal(pid: int) -> bool:
    """True when ``pid`` is in the terminal's foreground process group: a Ctrl-C from the
    terminal reached it already, forwarding it would deliver it twice."""
    for fd in (0, 1, 2):
        try:
            return os.tcgetpgrp(fd) == os.getpgid(pid)
        except OSError:
            continue
    return False


def _iso_seconds(text: Optional[str]) -> Optional[float]:
    if not text:
        return None
    import calendar
    import time

    try:
        whole, _, fraction = text.rstrip("Z").partition(".")
        seconds = calendar.timegm(time.strptime(whole, "%Y-%m-%dT%H:%M:%S"))
        return seconds + (int(fraction) / 1000 if fraction.isdigit() else 0.0)
    except (ValueError, OverflowError):
        return None


def report_files(template: str) -> list[str]:
    """Files a run with ``LEAKAGENT_REPORT=template`` may have written (see
    :func:`leakagent.runtime.lifecycle.report_path_for`)."""
    import glob

    if "{pid}" in template:
        before, _, after = template.partition("{pid}")
        return sorted(
            path
            for path in glob.glob(glob.escape(before) + "*" + glob.escape(after))
            if path[len(before) : len(path) - len(after) or None].isdigit()
        )
    stem, ext = os.path.splitext(template)
    found = [template] if os.path.exists(template) else []
    for path in sorted(glob.glob(glob.escape(stem) + ".*" + glob.escape(ext))):
        middle = path[len(stem) + 1 : len(path) - len(ext) or None]
        if middle.isdigit():
            found.append(path)
    return found


def read_reports(template: str, since: float) -> list[tuple[str, dict[str, Any]]]:
    """The reports of processes started at or after ``since`` (older files are stale)."""
    import json

    reports = []
    for path in report_files(template):
        try:
            with open(path, encoding="utf-8") as handle:
                data = json.load(handle)
        except (OSError, ValueError) as exc:
            sys.stderr.write(f"leakagent: --fail-on-suspect: cannot read {path}: {exc}\n")
            continue
        started = _iso_seconds(data.get("process", {}).get("started_at"))
        # The agent's clock stamp is in milliseconds, truncated: allow for that.
        if started is None or started < since - 0.002:
            continue
        reports.append((path, data))
    return reports


def run(executable: str, command: Sequence[str], env: dict[str, str], code: int) -> int:
    """Run ``command`` as a child, forward signals, then decide the exit code."""
    import shutil
    import signal
    import tempfile
    import time

    temporary = None
    template = env.get("LEAKAGENT_REPORT", "")
    if not template:
        temporary = tempfile.mkdtemp(prefix="leakagent-gate-")
        template = os.path.join(temporary, "report.{pid}.json")
        env["LEAKAGENT_REPORT"] = template
    started = time.time()
    child = 0
    pending: list[int] = []

    def forward(signum: int, frame: Optional[FrameType]) -> None:
        if not child:
            pending.append(signum)
        elif signum != signal.SIGINT or not _from_terminal(child):
            try:
                os.kill(child, signum)
            except ProcessLookupError:
                pass

    previous = {}
    for name in FORWARDED:
        number = getattr(signal, name, None)
        if number is not None:
            previous[number] = signal.signal(number, forward)
    sys.stdout.flush()
    sys.stderr.flush()
    child = os.fork()
    if child == 0:  # pragma: no cover - the child execs at once
        try:
            env["LEAKAGENT_ROOT_PID"] = str(os.getpid())
            os.execve(executable, list(command), env)
        except OSError as exc:
            os.write(2, f"leakagent: cannot run {command[0]}: {exc.strerror or exc}\n".encode())
        os._exit(126)
    try:
        for signum in pending:
            forward(signum, None)
        _, status = os.waitpid(child, 0)
    finally:
        for number, handler in previous.items():
            # None: a handler not installed from Python; the default is the closest.
            signal.signal(number, handler if handler is not None else signal.SIG_DFL)
    returncode = os.waitstatus_to_exitcode(status)
    if returncode < 0:
        returncode = 128 - returncode
    try:
        verdict = _verdict(read_reports(template, started), returncode, code)
        if temporary is not None and verdict != returncode:
            sys.stderr.write(
                "leakagent: --fail-on-suspect: the reports were temporary; "
                "--report PATH keeps them\n"
            )
        return verdict
    finally:
        if temporary is not None:
            shutil.rmtree(temporary, ignore_errors=True)


def _verdict(reports: list[tuple[str, dict[str, Any]]], returncode: int, code: int) -> int:
    say = sys.stderr.write
    if not reports:
        say(
            "leakagent: --fail-on-suspect: no report was written: the agent ran in no Python "
            "process of this command (python -E/-I/-S? LEAKAGENT_ENABLED=0?); nothing checked\n"
        )
        return returncode
    suspects = sum(len(data.get("suspects", ())) for _, data in reports)
    processes = sum(1 for _, data in reports if data.get("suspects"))
    for path, data in reports:
        if data.get("suspects") and not data.get("final"):
            # The process ended without its exit summary (killed): print it from the report.
            say(report_mod.render_text(data) + f"\n  report: {path} (not final)\n")
    if not suspects:
        return returncode
    found = (
        f"{suspects} suspect call site{'s' if suspects != 1 else ''} in {processes} "
        f"process{'es' if processes != 1 else ''}"
    )
    if returncode != 0:
        say(
            f"leakagent: --fail-on-suspect: {found}; "
            f"the command's own exit code {returncode} wins\n"
        )
        return returncode
    say(f"leakagent: --fail-on-suspect: {found}; exit code {code}\n")
    return code
