"""The pytest plugin's entry point (``pytest11``), off unless ``--leakagent`` or the ini says so.

pytest loads this module in every run of every project that has leakagent installed, so it
defines options and the marker and imports nothing else: the checker
(:mod:`leakagent.pytest_plugin.checker`) and the agent load only when the plugin is switched on.
Disable it altogether with ``-p no:leakagent``.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    import pytest

MARKER = (
    "leakagent(threshold=None, allow=()): leakagent's per-test check; threshold: fail above "
    "this many creations of one kind on one thread at one call site; allow: kinds or "
    "'file.py:LINE' call sites (fnmatch patterns) never to fail the test"
)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("leakagent", "leakagent: clients created over and over")
    group.addoption(
        "--leakagent",
        action="store_true",
        default=None,
        help="fail a test whose code creates the same kind of client (or threading.local) "
        "at one call site more than the threshold on one thread",
    )
    group.addoption(
        "--leakagent-threshold",
        metavar="N",
        type=int,
        default=None,
        help="per-test threshold (default: ini leakagent_threshold, else LEAKAGENT_THRESHOLD, "
        "else 50)",
    )
    parser.addini("leakagent", type="bool", default=False, help="switch the leakagent check on")
    parser.addini(
        "leakagent_threshold",
        default="",
        help="per-test threshold of the leakagent check (creations of one kind on one thread "
        "at one call site)",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", MARKER)
    if not (config.getoption("leakagent") or config.getini("leakagent")):
        return
    from leakagent.pytest_plugin.checker import LeakChecker

    config.pluginmanager.register(LeakChecker(config), "leakagent-checker")
