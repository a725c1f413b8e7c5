"""leakagent's sitecustomize: start the agent, then run the program's own sitecustomize.

Put this directory on PYTHONPATH (``leakagent --sitecustomize-dir`` prints it) or run the
program under the ``leakagent`` launcher. Nothing here may raise into the program.

PYTEST_DONT_REWRITE: pytest marks this module for assertion rewriting in an editable install
of leakagent (it is the distribution's only top-level module there), and would warn that it is
already imported.
"""


_MARKER = '"""leakagent\'s sitecustomize'


def _start_agent():
    try:
        from leakagent.runtime.agent import start
    except ImportError as exc:  # leakagent is not installed in this interpreter
        # Silent unless asked: in a container every Python runs this file, a system
        # /usr/bin/python3 without leakagent too, and must print nothing more than without it.
        import os

        if os.environ.get("LEAKAGENT_LOG_LEVEL", "").strip().upper() == "DEBUG":
            import sys

            sys.stderr.write(f"leakagent: not loaded, cannot import it here ({exc})\n")
        return
    start()


def _chain_to_next_sitecustomize():
    """Run the sitecustomize that this one shadows, if any (it must still run, once).

    It is looked up with ``PathFinder`` on a filtered copy of ``sys.path``: editing
    ``sys.path`` itself would race with threads importing at the same time (the telemetry
    set-up thread). Other copies of leakagent's own sitecustomize are passed over.
    """
    import os
    import sys
    from importlib import _bootstrap
    from importlib.machinery import PathFinder

    def directory_of(entry):
        try:
            return os.path.normcase(os.path.realpath(entry or os.curdir))
        except (OSError, ValueError):
            return entry

    def is_leakagent(origin):
        try:
            with open(origin, encoding="utf-8", errors="replace") as handle:
                return handle.read(200).startswith(_MARKER)
        except OSError:
            return False

    excluded = {directory_of(os.path.dirname(os.path.abspath(__file__)))}
    while True:
        path = [entry for entry in sys.path if directory_of(entry) not in excluded]
        spec = PathFinder.find_spec("sitecustomize", path)
        if spec is None or spec.loader is None:
            return
        if spec.origin and is_leakagent(spec.origin):
            excluded.add(directory_of(os.path.dirname(spec.origin)))
            continue
        break
    ours = sys.modules.get("sitecustomize")
    module = _bootstrap.module_from_spec(spec)
    sys.modules["sitecustomize"] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:  # what site.py would print for the program's own sitecustomize
        if ours is not None:
            sys.modules["sitecustomize"] = ours
        sys.stderr.write(
            f"Error in sitecustomize; set PYTHONVERBOSE for traceback:\n"
            f"{type(exc).__name__}: {exc}\n"
        )


def _leave_sys_path():
    """Take this directory off ``sys.path`` (``PYTHONPATH`` keeps it, for child processes).

    The program then sees the ``sys.path`` it has without the agent, and no path search has
    an extra entry to look in: ``importlib.metadata`` searches every entry on each lookup,
    which redis-py makes on every client (+26k to +34k instructions per ``redis.Redis()``).
    Done before the agent starts any thread: a list edited while another thread iterates it
    makes that thread skip an entry. The empty entry (the current directory) stays.
    """
    import os
    import sys

    try:
        here = os.path.dirname(os.path.abspath(__file__))
        for entry in [e for e in sys.path if e and isinstance(e, str)]:
            if os.path.abspath(entry) == here:
                sys.path.remove(entry)
    except Exception:  # an odd sys.path entry: leave the path as it is
        pass


try:
    _leave_sys_path()
    _start_agent()
finally:
    _chain_to_next_sitecustomize()
