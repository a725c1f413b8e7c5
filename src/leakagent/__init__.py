"""leakagent: find the client your program creates over and over, before the OOM killer does.

Run a program under the launcher (``leakagent python app.py``) or put the directory printed by
``leakagent --sitecustomize-dir`` on ``PYTHONPATH``. This package import stays light: it is
loaded into every process.

PYTEST_DONT_REWRITE: pytest marks the package of every distribution with a ``pytest11`` entry
point for assertion rewriting, and warns (an error under ``filterwarnings = error``) when it is
already imported, which the agent always is before pytest starts; this word tells it not to.
"""

from leakagent._version import __version__

__all__ = ["__version__", "track"]


def track(spec: str) -> bool:
    """Count ``"module:attribute"`` (a class or a factory) like a built-in client.

    True when the running agent will count it, False when no agent runs in this process; a
    malformed spec raises ValueError. See ``docs/targets.md``.
    """
    # imported on first use: this package stays light
    from leakagent.runtime.agent import track as _track

    return _track(spec)
