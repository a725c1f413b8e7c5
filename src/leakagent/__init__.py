"""leakagent: find the client your program creates over and over, before the OOM killer does.

Run a program under the launcher (``leakagent python app.py``) or put the directory printed by
``leakagent --sitecustomize-dir`` on ``PYTHONPATH``. This package import stays light: it is
loaded into every process.
"""

from ._version import __version__

__all__ = ["__version__"]
