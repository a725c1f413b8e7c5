"""Start the agent in this process: called by the sitecustomize module, never raises.

Reads the configuration, patches ``threading.local`` as soon as ``threading`` is imported (at
once if it already is), registers post-import hooks for the client targets, and starts the
reporter. wrapt and OpenTelemetry are not imported here: a client target imports wrapt when its
library is imported.
"""

from __future__ import annotations

import os

from leakagent.core import config as config_mod
from leakagent.core import forkpause, guard, log
from leakagent.core.targetspec import Spec, parse_spec
from leakagent.core.tracker import CONSTRUCTION_DEPTH, LOCAL_KIND, Tracker, qualified_name
from leakagent.hooks import importhook, threadlocal, usertargets
from leakagent.hooks.callsite import SiteFinder
from leakagent.hooks.catalog import CATALOG
from leakagent.outputs import report as report_mod
from leakagent.outputs import sizing
from leakagent.runtime.lifecycle import Reporter

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from types import FrameType, ModuleType
    from typing import Any, Optional

    from leakagent.core.config import Config
    from leakagent.hooks.catalog import Target

ROOT_PID_ENV = "LEAKAGENT_ROOT_PID"
_construction_depth = CONSTRUCTION_DEPTH.get
_RAW_LOCAL = threadlocal.RawLocal


class Agent:
    """The agent of this process: configuration, tracker, reporter and hooks."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.tracker = Tracker(
            threshold=config.threshold,
            max_sites=config.max_sites,
            max_live_refs=config.max_live_refs,
            on_suspect=self._on_suspect,
            refresh_seconds=config.refresh_seconds,
        )
        self.reporter = Reporter(self.tracker, config, _root_pid())
        self._local_sites = SiteFinder()
        self._subclass_kinds: dict[type, str] = {}
        self._local_class: Optional[type] = None  # the counting class, once patched
        self.suspect_listeners: list[Callable[[dict[str, Any], str], None]] = []
        """Called with (site copy, event) after the warning; used by the telemetry layer."""
        self._user_specs: list[Spec] = []

    # -- hooks ----------------------------------------------------------------------------

    def _on_suspect(self, site: dict[str, Any], event: str) -> None:
        log.warning(
            report_mod.warning_line(
                sizing.with_sizes(self.tracker, site), event, self.config.threshold
            )
        )
        self.reporter.wake()
        for listener in self.suspect_listeners:
            try:
                listener(site, event)
            except Exception as exc:
                guard.failed("suspect listener", exc)

    def _local_created(self, cls: type, obj: object, frame: Optional[FrameType] = None) -> None:
        """The slow path of the ``threading.local`` hook: a site not seen before (or made
        through a library, whose site depends on the whole stack). A site the program's own
        frame made is remembered for the fast path in ``threadlocal``."""
        if _construction_depth():  # kept by a client being counted right now
            return
        finder = self._local_sites
        base: Optional[str] = None
        key_cls: Optional[type] = self._local_class
        if cls is _RAW_LOCAL:
            kind = LOCAL_KIND
        else:
            known = self._subclass_kinds.get(cls)
            if known is None:
                known = qualified_name(cls)
                if len(self._subclass_kinds) < 1000:
                    self._subclass_kinds[cls] = known
            kind, base, key_cls = known, LOCAL_KIND, cls
        site = finder.direct(frame) if frame is not None else None
        if site is None or frame is None:
            site = finder.find_fast(1)
            self.tracker.record(kind, site, obj, base)
            return
        self.tracker.record(kind, site, obj, base)
        if key_cls is not None:
            code = frame.f_code
            self.tracker.remember((id(code), frame.f_lasti, key_cls), code, kind, site)

    def _patch_threading(self, module: ModuleType) -> None:
        fast = threadlocal.FastPath(self.tracker.slot, self.tracker, _construction_depth)
        if threadlocal.patch(module, self._local_created, fast, self.config.native):
            self._local_class = module.__dict__.get("local")

    def _hook_for(self, target: Target) -> Callable[[ModuleType], None]:
        def patch_target(module: ModuleType) -> None:
            try:
                from leakagent.hooks import (
                    patcher,  # imports wrapt: only once a target library is imported
                )
            except ImportError as exc:
                log.warning_once(
                    "wrapt",
                    f"client constructors are not counted: {exc} "
                    "(threading.local still is; install wrapt>=2 to count clients)",
                )
                return
            try:
                patcher.patch(target, module, self.tracker)
            except (AttributeError, TypeError) as exc:  # a library version we do not know
                version = getattr(module, "__version__", "of unknown version")
                log.warning_once(
                    f"target:{target.name}",
                    f"{target.name} is not counted: {target.module}.{target.attribute} "
                    f"was not found as expected in {target.distribution} {version} "
                    f"(tested with {target.min_version or 'the current'} and newer): {exc}",
                )

        return patch_target

    def _track_multiprocessing(self, util: ModuleType) -> None:
        # multiprocessing children started by fork end with os._exit(), which skips atexit:
        # register the final report with multiprocessing's own exit finalizers in each child.
        # Celery's pool, billiard (a fork of multiprocessing), has the same util functions.
        def in_child(agent: Agent) -> None:
            util.Finalize(agent, agent.reporter.finish, exitpriority=-100)

        util.register_after_fork(self, in_child)

    def _track_billiard_pool(self, pool: ModuleType) -> None:
        # billiard's pool workers leave through Worker._do_exit -> os._exit() from inside the
        # worker itself, so even the exit finalizers never run: the final report goes first.
        worker = getattr(pool, "Worker", None)
        do_exit = getattr(worker, "_do_exit", None)
        if do_exit is None or getattr(do_exit, "__leakagent__", False):
            return
        finish = self.reporter.finish

        def _do_exit(*args: Any, **kwargs: Any) -> Any:
            try:
                finish()
            except Exception as exc:  # pragma: no cover - finish() contains its errors
                guard.failed("billiard", exc)
            return do_exit(*args, **kwargs)

        _do_exit.__leakagent__ = True  # type: ignore[attr-defined]
        _do_exit.__wrapped__ = do_exit  # type: ignore[attr-defined]
        worker._do_exit = _do_exit  # type: ignore[union-attr]

    # -- user targets (LEAKAGENT_TARGETS, --target, leakagent.track) ----------------------

    def watch(self, spec: Spec) -> None:
        """Count ``spec`` once its module is imported (now, if it already is)."""

        def patch_user_target(module: ModuleType) -> None:
            try:
                from leakagent.hooks import patcher
            except ImportError as exc:  # wrapt missing or too old: said once, as for built-ins
                log.warning_once("wrapt", f"client constructors are not counted: {exc}")
                return
            try:
                target = usertargets.target_for(spec, module)
                patcher.patch(target, module, self.tracker)
            except LookupError as exc:
                log.warning(str(exc))
            except (AttributeError, TypeError) as exc:
                log.warning(f"target {spec.text!r} cannot be patched ({exc}); not tracked")

        if not self._user_specs:
            import atexit

            atexit.register(self._check_user_targets)
        self._user_specs.append(spec)
        importhook.when_imported(spec.module, patch_user_target)

    def _check_user_targets(self) -> None:
        waiting = set(importhook.pending())
        for spec in self._user_specs:
            if spec.module in waiting:
                problem = usertargets.never_imported_problem(spec)
                if problem is not None:
                    log.warning(problem)

    # -- life cycle -----------------------------------------------------------------------

    def start(self) -> None:
        """Install the hooks and the reporter."""
        if self.config.track_locals:
            importhook.when_imported("threading", self._patch_threading)
        if self.config.track_clients:
            disabled, problems = usertargets.check_disabled(self.config.disabled_targets)
            for problem in problems:
                log.warning(problem)
            for target in usertargets.select(CATALOG, disabled):
                importhook.when_imported(target.module, self._hook_for(target))
            for text in self.config.targets:
                self.watch(parse_spec(text))
        importhook.when_imported("multiprocessing.util", self._track_multiprocessing)
        importhook.when_imported("billiard.util", self._track_multiprocessing)
        importhook.when_imported("billiard.pool", self._track_billiard_pool)
        self.reporter.start()
        self.reporter.install_exit_hooks()
        if hasattr(os, "register_at_fork"):
            os.register_at_fork(
                before=_before_fork,
                after_in_parent=forkpause.after_fork_in_parent,
                after_in_child=self._after_fork_in_child,
            )
        self._start_telemetry()

    def _start_telemetry(self) -> None:
        """OpenTelemetry export, only when the OTEL_* variables configure it."""
        try:
            from leakagent.outputs import (
                telemetry,  # light: no OpenTelemetry import unless export is on
            )

            telemetry.start(
                self.tracker,
                self.config,
                add_suspect_listener=self.suspect_listeners.append,
                add_finish_hook=self.reporter.finish_hooks.append,
            )
        except Exception as exc:
            guard.failed("telemetry", exc)

    def _after_fork_in_child(self) -> None:
        try:
            forkpause.after_fork_in_child()
            # The tracker's fresh state includes a ``_thread._local`` of its own (the counting
            # class by now): not a creation of the program's.
            token = CONSTRUCTION_DEPTH.set(CONSTRUCTION_DEPTH.get() + 1)
            try:
                self.tracker.reset_after_fork()
            finally:
                CONSTRUCTION_DEPTH.reset(token)
            log.reset_after_fork()
            self.reporter.after_fork_in_child()
        except Exception as exc:
            guard.failed("fork", exc)

    def stop(self) -> None:
        """Remove every patch (tests and ``leakagent.stop()``); counts are kept."""
        import sys

        threading = sys.modules.get("threading")
        if threading is not None:
            threadlocal.unpatch(threading)
        importhook.uninstall()
        patcher = sys.modules.get("leakagent.hooks.patcher")
        if patcher is not None:
            patcher.unpatch_all()


_agent: Optional[Agent] = None


def _root_pid() -> Optional[int]:
    """The pid of the process the agent was first loaded in; children inherit it."""
    value = os.environ.get(ROOT_PID_ENV, "")
    if value.isdigit():
        return int(value)
    os.environ[ROOT_PID_ENV] = str(os.getpid())
    return os.getpid()


def _before_fork() -> None:
    """The agent's threads leave (core/forkpause.py), then its lazy imports are finished."""
    forkpause.before_fork()
    _finish_lazy_imports()


def _finish_lazy_imports() -> None:
    """Before a fork: import what the agent imports lazily, from any thread.

    A module lock held at fork time by another thread (say, the report writer importing
    ``json``) is never released in the child, whose next import of that module hangs for ever
    (seen here with pre-fork workers). Importing them here waits for such an import to finish
    before the fork. Never a module that registers fork hooks of its own (``logging``): one
    registered while the before-fork hooks run gets its after-fork hooks only, which printed
    ``RuntimeError: cannot release un-acquired lock`` at the first fork.
    The agent's own lines do not use ``logging`` (core/log.py).
    """
    try:
        import json  # noqa: F401
    except Exception:  # pragma: no cover
        pass


def _inject_test_faults(agent: Agent) -> None:
    """Make the parts named in ``LEAKAGENT_TEST_FAULT`` raise (tests only; no hot-path cost)."""

    def raiser(part: str) -> Callable[..., Any]:
        def fail(*args: object, **kwargs: object) -> Any:
            guard.fault_point(part)

        return fail

    if "local-hook" in guard.FAULTS:
        agent._local_created = raiser("local-hook")  # type: ignore[method-assign]
    if "tracker" in guard.FAULTS:
        agent.tracker.record = raiser("tracker")  # type: ignore[method-assign]
    if "callsite" in guard.FAULTS:
        SiteFinder.find = raiser("callsite")  # type: ignore[method-assign]
        SiteFinder.find_fast = raiser("callsite")  # type: ignore[method-assign]
        SiteFinder.direct = raiser("callsite")  # type: ignore[method-assign]


def get_agent() -> Optional[Agent]:
    """The running agent, or None when it is disabled or not started."""
    return _agent


def track(spec: str) -> bool:
    """Count ``spec`` (``"module:attribute"``) like a built-in client, from now on.

    Returns True when the running agent will count it (now, or once the module is imported),
    False when no agent runs in this process (or client tracking is off). A malformed spec
    raises ValueError. Instances created before the call are not counted; a factory bound by
    ``from module import factory`` before the call is missed (classes are not).
    """
    parsed = parse_spec(spec)
    agent = get_agent()
    if agent is None or not agent.config.track_clients:
        return False
    agent.watch(parsed)
    return True


def start(config: Optional[Config] = None) -> Optional[Agent]:
    """Start the agent once per process. Never raises (except in strict test mode).

    ``config`` replaces the environment's (the pytest plugin's in-process mode)."""
    global _agent
    if _agent is not None:
        return _agent
    try:
        if config is None:
            config = config_mod.load()
        log.set_level(config.log_level)
        if not config.enabled:
            return None
        config_mod.warn_problems(config)
        agent = Agent(config)
        _agent = agent
        if guard.FAULTS:
            _inject_test_faults(agent)
        agent.start()
        return agent
    except Exception as exc:
        guard.failed("bootstrap", exc)
        return None
