"""Getting the facts out before the process dies: periodic report, exit, SIGTERM, fork.

The OOM killer sends SIGKILL: no atexit, no final report. So the JSON report is rewritten
every ``LEAKAGENT_REPORT_INTERVAL`` seconds (and at once when a new suspect appears) by a
background thread, and once more at exit and on SIGTERM.

The writer runs on a raw ``_thread`` thread: importing ``threading`` costs ~7 ms on a cold
start, and a daemon loop needs none of it.
"""

from __future__ import annotations

import _signal  # type: ignore[import-not-found]
import _thread
import os

from leakagent.core import forkpause, guard, log
from leakagent.outputs import report as report_mod
from leakagent.outputs.memwatch import MemoryWatcher

TYPE_CHECKING = False
if TYPE_CHECKING:
    from types import FrameType
    from typing import Any, Callable, Optional

    from leakagent.core.config import Config
    from leakagent.core.tracker import Tracker

PART = "report"


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
        self._wake = _thread.allocate_lock()
        # The writer thread and finish() never write at once. A plain lock: eventlet turns
        # existing RLocks into green ones, which hang when a real thread takes them.
        self._writing = _thread.allocate_lock()
        self._stopped = False
        self._done = False
        self._written_generation: object = -1
        self._thread_started = False
        self.finish_hooks: list[Callable[[], None]] = []
        """Run at the end of :meth:`finish` (atexit, SIGTERM), each contained (telemetry flush)."""
        self._force = False
        self._due = 0.0
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
        # The memory watcher warns near the memory limit even without a report; with one, it
        # also samples the report's time series.
        self.memory.start(series=bool(self.path))
        if not self.config.report_path:
            return
        # Imported here, not on the writer thread: once eventlet or gevent has patched
        # ``_thread``, an import on a thread that is not theirs takes a green import lock and
        # hangs (and the exit with it, waiting for the writer).
        import json  # noqa: F401

        self._wake = _thread.allocate_lock()
        self._wake.acquire()
        forkpause.Worker(self._loop, self.wake).start()  # gone while the process forks
        self._thread_started = True

    def _loop(self, resumed: bool = False) -> None:
        interval = self.config.report_interval
        while not self._stopped and not forkpause.parking:
            if not resumed:  # after a fork: the rest of the interval first
                self.write(final=False)
                self._due = forkpause.monotonic() + interval
            resumed = False
            self._wake.acquire(timeout=max(0.0, self._due - forkpause.monotonic()))

    def wake(self) -> None:
        """Rewrite the report now (a new suspect appeared)."""
        try:
            self._wake.release()
        except RuntimeError:  # already awake
            pass

    def rewrite_now(self) -> None:
        """Rewrite the report at once even if the counts did not change (memory warning)."""
        self._force = True
        self.wake()

    def write(self, *, final: bool) -> Optional[dict[str, Any]]:
        """Write the JSON report if anything changed (always when ``final``). Never raises."""
        if guard.is_off(PART):
            return None
        with self._writing:
            return self._write(final)

    def _write(self, final: bool) -> Optional[dict[str, Any]]:
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
            if self.path:
                report_mod.write_json(data, self.path)
            self._written_generation = generation
            return data
        except OSError as exc:
            log.warning_once(
                f"report-path:{self.path}",
                f"cannot write the report to {self.path} ({exc.strerror or exc}); "
                "set LEAKAGENT_REPORT to a writable path",
            )
            return None
        except Exception as exc:
            guard.failed(PART, exc)
            return None

    # -- the end --------------------------------------------------------------------------

    def finish(self) -> None:
        """Final report and stderr summary; runs once (atexit or SIGTERM)."""
        if self._done:
            return
        self._done = True
        self._stopped = True
        self.wake()
        try:
            self.memory.stop()
            self.memory.final_point()
            data = self.write(final=True)
            if data is None:
                return
            mode = self.config.summary
            if mode == "always" or (mode == "auto" and data["suspects"]):
                text = report_mod.render_text(data, all_sites=mode == "always")
                if self.path:
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
        """atexit, and SIGTERM when the program has not claimed it (the default kills us)."""
        import atexit

        atexit.register(self.finish)
        try:
            if _signal.getsignal(_signal.SIGTERM) == _signal.SIG_DFL:
                _signal.signal(_signal.SIGTERM, self._on_sigterm)
        except (ValueError, OSError):  # not the main thread, or no signals here
            pass

    def _on_sigterm(self, signum: int, frame: Optional[FrameType]) -> None:
        # This handler may have interrupted the main thread inside the tracker's (plain)
        # lock: then the final report cannot be built here; the periodic one stands.
        lock = self.tracker._lock
        if lock.acquire(timeout=1.0):
            lock.release()
            self.finish()
        # Die of SIGTERM exactly as without the agent.
        _signal.signal(_signal.SIGTERM, _signal.SIG_DFL)
        os.kill(os.getpid(), _signal.SIGTERM)

    def after_fork_in_child(self) -> None:
        """The child writes its own report file and summary."""
        self._thread_started = False
        self._writing = _thread.allocate_lock()  # the parent's may have been held at fork time
        self.start()
