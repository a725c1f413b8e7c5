"""Getting the facts out before the process dies: periodic report, exit, SIGTERM, fork.

The OOM killer sends SIGKILL: no atexit, no final report. So the JSON report is rewritten
every ``LEAKAGENT_REPORT_INTERVAL`` seconds (and at once when a new suspect appears) by a
background thread, and once more at exit and on SIGTERM.

The writer runs on a raw ``_thread`` thread: importing ``threading`` costs ~7 ms on a cold
start, and a daemon loop needs none of it. The same thread notices SIGTERM at the C level
(:mod:`leakagent.runtime.termwatch`), so the final report never waits for the main thread to
leave a long C call, and the process still dies of SIGTERM within ``SIGTERM_BUDGET``.
"""

from __future__ import annotations

import _thread
import os
import select
import time

from leakagent.core import forkpause, guard, log
from leakagent.outputs import report as report_mod
from leakagent.outputs import reportfile
from leakagent.outputs.memwatch import MemoryWatcher
from leakagent.runtime.termwatch import TermWatch

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, Optional

    from leakagent.core.config import Config
    from leakagent.core.tracker import Tracker

PART = "report"
SIGTERM_BUDGET = 1.0
"""Seconds the final report may take on SIGTERM before the process dies anyway."""

# Captured at load, before eventlet or gevent can make them green (see reportfile).
_poll = getattr(select, "poll", None)
_pipe, _read, _write, _start_thread = os.pipe, os.read, os.write, _thread.start_new_thread


def report_path_for(template: str, pid: int, root_pid: Optional[int]) -> str:
    """Expand ``{pid}``; a process other than the root one gets its own file anyway."""
    path = os.path.expanduser(template)
    if "{pid}" in path:
        return path.replace("{pid}", str(pid))
    if root_pid is not None and root_pid != pid:
        stem, ext = os.path.splitext(path)
        return f"{stem}.{pid}{ext}"
    return path


class Reporter:
    """Writes the JSON report periodically and at the end; prints the summary at exit."""

    def __init__(self, tracker: Tracker, config: Config, root_pid: Optional[int]) -> None:
        self.tracker = tracker
        self.config = config
        self.root_pid = root_pid
        self.path: Optional[str] = None
        self._file: Optional[reportfile.ReportFile] = None
        self._term = TermWatch()
        self._wake_fds = (-1, -1)
        self._due = 0.0
        # The writer thread and finish() never write at once. Plain locks: eventlet turns
        # existing RLocks into green ones, which hang when a real thread takes them.
        self._writing = _thread.allocate_lock()
        self._finishing = _thread.allocate_lock()
        self._starting = _thread.allocate_lock()
        self._stopped = False
        self._done = False
        self._written_generation: object = -1
        self._thread_started = False
        self.finish_hooks: list[Callable[[], None]] = []
        """Run at the end of :meth:`finish` (atexit, SIGTERM), each contained (telemetry flush)."""
        self._force = False
        self.memory = MemoryWatcher(
            tracker, config, rewrite_report=self.rewrite_now, report_path=lambda: self.path
        )

    # -- periodic -------------------------------------------------------------------------

    def start(self) -> None:
        """Start the periodic writer when a report path is configured."""
        self._done = False
        self._stopped = False
        self._written_generation = -1
        if self.config.report_path:
            self.path = report_path_for(self.config.report_path, os.getpid(), self.root_pid)
            shared = "{pid}" not in self.config.report_path and self.path == os.path.expanduser(
                self.config.report_path
            )
            self._file = reportfile.ReportFile(self.path, shared=shared)
        # The memory watcher warns near the memory limit even without a report; with one, it
        # also samples the report's time series.
        self.memory.start(series=bool(self.path))
        if self.config.report_path or self.config.summary == "always":
            self._start_thread()

    def _start_thread(self) -> None:
        """The writer/SIGTERM thread: with a report, or once there is a summary to print.

        Without a report and without suspects (summary ``auto``) there is nothing to save on
        SIGTERM: no thread, no handler, the process is left exactly as it was.
        """
        with self._starting:  # two threads may see the first suspect at once
            if self._thread_started or self._done:
                return
            self._thread_started = True
        # Imported here, not on the writer thread: once eventlet or gevent has patched
        # ``_thread``, an import on a thread that is not theirs takes a green import lock and
        # hangs (and the exit with it, waiting for the writer).
        import json  # noqa: F401

        read_fd, write_fd = _pipe()
        os.set_blocking(write_fd, False)
        self._wake_fds = (read_fd, write_fd)
        self._term.register()
        forkpause.Worker(self._loop, self._poke).start()  # gone while the process forks

    def _loop(self, resumed: bool = False) -> None:
        """Periodic writes, wake-ups and SIGTERM; returns when a fork parks it (``resumed``:
        started again after the fork, the rest of the interval first)."""
        if _poll is None:  # pragma: no cover - no poll(): periodic writes only
            self._loop_without_poll()
            return
        poller = _poll()
        wake_fd = self._wake_fds[0]
        poller.register(wake_fd, select.POLLIN)
        if self._term.registered:
            poller.register(self._term.read_fd, select.POLLIN)
        interval = self.config.report_interval
        while not forkpause.parking:
            periodic = bool(self.path) and not self._stopped
            if periodic and not resumed:
                self.write(final=False)
                self._due = forkpause.monotonic() + interval
            resumed = False
            timeout = None
            if periodic:
                timeout = max(0, int((self._due - forkpause.monotonic()) * 1000))
            ready = {fd for fd, _ in poller.poll(timeout)}
            if self._term.registered and self._term.read_fd in ready:
                self._on_sigterm()
                return
            if wake_fd in ready:
                _read(wake_fd, 4096)

    def _loop_without_poll(self) -> None:
        while not self._stopped and not forkpause.parking:
            if self.path:
                self.write(final=False)
            time.sleep(self.config.report_interval)

    def _poke(self) -> None:
        """Wake the writer thread (a suspect, a memory warning, a fork parking it)."""
        try:
            _write(self._wake_fds[1], b"w")
        except OSError:  # full: already awake
            pass

    def wake(self) -> None:
        """Rewrite the report now (a new suspect appeared)."""
        if not self._thread_started:
            if self.config.summary == "never" or self._done:
                return
            self._start_thread()  # a summary to print on SIGTERM from now on
        self._poke()

    def rewrite_now(self) -> None:
        """Rewrite the report at once even if the counts did not change (memory warning)."""
        self._force = True
        self.wake()

    def write(self, *, final: bool) -> Optional[dict[str, Any]]:
        """Write the JSON report if anything changed (always when ``final``). Never raises.

        Returns the report built (even when the file could not be written), else None."""
        if guard.is_off(PART):
            return None
        with self._writing:
            return self._write(final)

    def _write(self, final: bool) -> Optional[dict[str, Any]]:
        data = None
        try:
            guard.fault_point(PART)
            generation = (self.tracker.generation, self.memory.version)
            if not final and not self._force and generation == self._written_generation:
                return None
            self._force = False
            data = report_mod.build(
                self.tracker,
                final=final,
                sections=self.memory.sections(),
                show_internal=self.config.show_internal,
            )
            if self._file is not None:
                self._check_other_writer()
                self._file.write(report_mod.encode(data), time.time())
            self._written_generation = generation
            return data
        except OSError as exc:
            log.warning_once(
                f"report-path:{self.path}",
                f"cannot write the report to {self.path} ({exc.strerror or exc}); "
                "set LEAKAGENT_REPORT to a writable path",
            )
            return data
        except Exception as exc:
            guard.failed(PART, exc)
            return data

    def _check_other_writer(self) -> None:
        assert self._file is not None
        other = self._file.other_writer()
        if other is None:
            return
        new_path = reportfile.unique_path(self._file.path, os.getpid())
        log.warning_once(
            f"report-shared:{self._file.path}",
            f"{other} writes the report {self._file.path} too; this process (pid "
            f"{os.getpid()}) writes {new_path} instead (put {{pid}} in LEAKAGENT_REPORT for "
            "one file per process)",
        )
        self.path = new_path
        self._file = reportfile.ReportFile(new_path, shared=False)

    # -- the end --------------------------------------------------------------------------

    def finish(self) -> None:
        """Final report and stderr summary; runs once (atexit, SIGTERM, a multiprocessing
        child's exit). A second caller waits for the first (bounded) so that the process
        does not end in the middle of the write."""
        if not self._finishing.acquire(False):
            if self._finishing.acquire(timeout=SIGTERM_BUDGET):
                self._finishing.release()
            self._die_if_terminated()
            return
        try:
            if not self._done:
                self._done = True
                self._stopped = True
                self._finish()
        finally:
            self._finishing.release()
        self._die_if_terminated()
        # Nothing more to save: a SIGTERM from now on (late in the interpreter's exit,
        # when the writer thread may no longer run) gets the default action at once.
        self._term.restore_default()

    def _die_if_terminated(self) -> None:
        """SIGTERM came while the main thread held the GIL in C, and the program reached its
        exit before the writer thread could run: it still dies of SIGTERM, as without us."""
        if self._term.fired():
            self._term.die_of_sigterm()

    def _finish(self) -> None:
        try:
            self.memory.stop()
            data = None
            mode = self.config.summary
            if self.path:
                self.memory.final_point()
                data = self.write(final=True)
            elif mode == "always" or (mode == "auto" and self.tracker.totals()["suspects"]):
                # No report asked for: the whole report is built only for a summary to print.
                data = report_mod.build(
                    self.tracker,
                    final=True,
                    sections=self.memory.sections(),
                    show_internal=self.config.show_internal,
                )
            if data is not None and (mode == "always" or (mode == "auto" and data["suspects"])):
                text = report_mod.render_text(data, all_sites=mode == "always")
                if self.path and self._written_generation != -1:
                    text += f"\n  report: {self.path}"
                log.write_stderr(text)  # the real stderr, never a redirected sys.stderr
        except Exception as exc:
            try:
                guard.failed(PART, exc)
            except Exception:
                pass
        finally:
            self._run_finish_hooks()

    def _run_finish_hooks(self) -> None:
        for hook in self.finish_hooks:
            try:
                hook()
            except Exception as exc:
                try:
                    guard.failed("exit hook", exc)
                except Exception:
                    pass

    def install_exit_hooks(self) -> None:
        """atexit; SIGTERM is noticed by the writer thread (:mod:`termwatch`)."""
        import atexit

        atexit.register(self.finish)

    def _on_sigterm(self) -> None:
        """On the writer thread, SIGTERM just arrived: final report, then die of SIGTERM.

        The final report is written on one more thread, so that whatever it waits for (a
        lock, a slow exit hook) the process dies within ``SIGTERM_BUDGET``."""
        done = _thread.allocate_lock()
        done.acquire()

        def final_report() -> None:
            try:
                self.finish()
            finally:
                done.release()

        try:
            _start_thread(final_report, ())
            done.acquire(timeout=SIGTERM_BUDGET)
        finally:
            self._term.die_of_sigterm()

    def after_fork_in_child(self) -> None:
        """The child writes its own report file and summary."""
        self._thread_started = False
        self._writing = _thread.allocate_lock()  # the parent's may have been held at fork time
        self._finishing = _thread.allocate_lock()
        self._starting = _thread.allocate_lock()
        for fd in self._wake_fds:
            if fd >= 0:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self._wake_fds = (-1, -1)
        self._term.forget_after_fork()
        self._file = None
        self.path = None
        self.start()
