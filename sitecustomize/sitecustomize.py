"""leakagent's sitecustomize: start the agent, then run the program's own sitecustomize.

Put this directory on PYTHONPATH (``leakagent --sitecustomize-dir`` prints it) or run the
program under the ``leakagent`` launcher. Nothing here may raise into the program.
"""


def _start_agent():
    try:
        from leakagent.bootstrap import start
    except ImportError as exc:  # leakagent is not installed in this interpreter
        import sys

        sys.stderr.write(f"leakagent: not loaded, cannot import it here ({exc})\n")
        return
    start()


def _chain_to_next_sitecustomize():
    """Import the sitecustomize that this one shadows, if any (it must still run, once)."""
    import os
    import sys

    here = os.path.normcase(os.path.realpath(os.path.dirname(os.path.abspath(__file__))))

    def is_here(entry):
        try:
            return os.path.normcase(os.path.realpath(entry or os.curdir)) == here
        except (OSError, ValueError):
            return False

    ours = sys.modules.pop("sitecustomize", None)
    removed = [(index, entry) for index, entry in enumerate(sys.path) if is_here(entry)]
    for index, _ in reversed(removed):
        del sys.path[index]
    try:
        __import__("sitecustomize")
    except ImportError as exc:
        if exc.name != "sitecustomize":
            sys.stderr.write(f"Error in sitecustomize; set PYTHONVERBOSE for traceback:\n{exc!r}\n")
    except Exception as exc:  # what site.py would print for the program's own sitecustomize
        sys.stderr.write(
            f"Error in sitecustomize; set PYTHONVERBOSE for traceback:\n"
            f"{type(exc).__name__}: {exc}\n"
        )
    finally:
        for index, entry in removed:  # keep whatever the next sitecustomize changed
            if entry not in sys.path:
                sys.path.insert(index, entry)
        if "sitecustomize" not in sys.modules and ours is not None:
            sys.modules["sitecustomize"] = ours


try:
    _start_agent()
finally:
    _chain_to_next_sitecustomize()
