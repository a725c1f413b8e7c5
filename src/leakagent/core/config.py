"""Every ``LEAKAGENT_*`` environment variable, in one place.

The launcher turns its options into these variables; container mode sets them directly.
A malformed value never stops the program: it produces one warning naming the variable and
the default is used instead.
"""

from __future__ import annotations

import os

from leakagent.core import log, targetspec

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from typing import Optional

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


class Setting:
    """One documented environment variable (used by ``--help`` and ``docs/configuration.md``)."""

    __slots__ = ("default", "env", "help")

    def __init__(self, env: str, default: str, help: str) -> None:
        self.env = env
        self.default = default
        self.help = help


SETTINGS: tuple[Setting, ...] = (
    Setting("LEAKAGENT_ENABLED", "1", "0/false/no/off loads nothing at all."),
    Setting(
        "LEAKAGENT_THRESHOLD",
        "40",
        "A call site becomes a suspect once it has created this many instances of one kind "
        "beyond one per thread alive at a time (a one-thread program: more than this many), "
        "or keeps this many more alive (retention).",
    ),
    Setting(
        "LEAKAGENT_REFRESH_SECONDS",
        "60",
        "Creations beyond one per thread leak away at one per this many seconds, so a client "
        "rebuilt periodically (fresh credentials) never becomes a suspect; 0: never leak.",
    ),
    Setting(
        "LEAKAGENT_REPORT",
        "",
        "Path of the JSON report, rewritten periodically, at exit and on SIGTERM. "
        "'{pid}' expands to the process id.",
    ),
    Setting("LEAKAGENT_REPORT_INTERVAL", "5", "Seconds between two rewrites of the JSON report."),
    Setting(
        "LEAKAGENT_ARGV",
        "redacted",
        "How the report records the command line: redacted (values of credential-like "
        "arguments replaced by ***), full (verbatim) or none (the program only).",
    ),
    Setting(
        "LEAKAGENT_SUMMARY",
        "auto",
        "Text summary on stderr at exit: auto (when there are suspects), always, never.",
    ),
    Setting("LEAKAGENT_TRACK_LOCALS", "1", "Count threading.local instantiations."),
    Setting(
        "LEAKAGENT_NATIVE",
        "1",
        "Count threading.local creations in the package's optional C fast path when it was "
        "built; 0: the pure-Python one (the same counts, slower).",
    ),
    Setting("LEAKAGENT_TRACK_CLIENTS", "1", "Count constructions of known client classes."),
    Setting(
        "LEAKAGENT_MAX_SITES",
        "10000",
        "Most call sites tracked; creations at further sites are counted in one overflow "
        "site per kind.",
    ),
    Setting(
        "LEAKAGENT_MAX_LIVE_REFS",
        "200000",
        "Most live instances watched through weak references; beyond it 'live' is a lower bound.",
    ),
    Setting("LEAKAGENT_LOG_LEVEL", "WARNING", "Lowest level of the agent's own stderr lines."),
    # -- OpenTelemetry export. Export itself is switched on by the standard
    # OTEL_* variables (OTEL_TRACES_EXPORTER, OTEL_METRICS_EXPORTER, OTEL_EXPORTER_OTLP_*):
    # see docs/opentelemetry.md. These only tune it.
    Setting(
        "LEAKAGENT_OTEL_MAX_SERIES",
        "500",
        "Most call sites exported with their own attributes per metric; further sites are "
        "summed into one series marked otel.metric.overflow=true.",
    ),
    Setting(
        "LEAKAGENT_OTEL_SPAN_RATE",
        "10",
        "Most creation spans per call site per minute (0: no creation spans; suspects are "
        "always a span).",
    ),
    Setting(
        "LEAKAGENT_OTEL_EXIT_TIMEOUT",
        "0.4",
        "Seconds the final telemetry flush may add at exit or SIGTERM, whatever the "
        "collector does.",
    ),
    Setting(
        "LEAKAGENT_CGROUP_ROOT",
        "/sys/fs/cgroup",
        "Where the cgroup file system is mounted, to find the container memory limit "
        "(leakagent.memory.limit).",
    ),
    # -- client targets (docs/targets.md) --
    Setting(
        "LEAKAGENT_TARGETS",
        "",
        "More constructors to count, comma-separated module:attribute specs "
        "(pkg.clients:ApiClient for a class, pkg.factory:make_client for a factory); "
        "each is patched when its module is imported.",
    ),
    Setting(
        "LEAKAGENT_DISABLED_TARGETS",
        "",
        "Built-in targets not to count, comma-separated names from docs/targets.md "
        "(e.g. requests.Session), or * for all of them.",
    ),
    Setting(
        "LEAKAGENT_MEMORY_WATCH",
        "1",
        "Watch the process memory (RSS) on a background thread: early warnings near the "
        "memory limit, and the time series of the report.",
    ),
    Setting(
        "LEAKAGENT_MEMORY_LIMIT",
        "",
        "Memory limit the warnings are relative to, in bytes; suffixes k/M/G/T (x1000) and "
        "Ki/Mi/Gi/Ti (x1024) accepted, 'none' for no limit. Unset: the container's cgroup "
        "limit (v2 memory.max, v1 memory.limit_in_bytes), if any.",
    ),
    Setting(
        "LEAKAGENT_MEMORY_WARN_AT",
        "0.7,0.9",
        "Fractions of the memory limit at which one warning line is written (once each) "
        "and the report is rewritten at once; comma-separated, each in (0, 1].",
    ),
    Setting(
        "LEAKAGENT_MEMORY_INTERVAL",
        "1",
        "Seconds between two reads of the process memory.",
    ),
    Setting(
        "LEAKAGENT_SHOW_INTERNAL",
        "0",
        "Also list the standard library's and the agent's own call sites (made once at "
        "import time) in summaries, memory warnings and the viewer's legends; they are "
        "always counted in the totals.",
    ),
)

_DEFAULTS = {s.env: s.default for s in SETTINGS}
RANGES: dict[str, tuple[float, float]] = {
    "LEAKAGENT_THRESHOLD": (1, 10**9),
    "LEAKAGENT_REPORT_INTERVAL": (0.1, 86_400),  # seconds: up to a day
    "LEAKAGENT_MAX_SITES": (1, 10**7),
    "LEAKAGENT_MAX_LIVE_REFS": (0, 10**8),
    "LEAKAGENT_OTEL_MAX_SERIES": (1, 10**6),
    "LEAKAGENT_OTEL_SPAN_RATE": (0, 10**6),
    "LEAKAGENT_OTEL_EXIT_TIMEOUT": (0, 60),
    "LEAKAGENT_MEMORY_INTERVAL": (0.01, 3_600),
    "LEAKAGENT_REFRESH_SECONDS": (0, 7 * 86_400),  # 0: no allowance; up to a week
}
"""Sane range of every numeric setting; out of it: one warning naming it, default used."""
SUMMARY_MODES = ("auto", "always", "never")


class Config:
    """The agent's settings, read once at start-up (a plain class: dataclasses cost 11 ms)."""

    def __init__(
        self,
        *,
        enabled: bool = True,
        threshold: int = 40,
        report_path: Optional[str] = None,
        report_interval: float = 5.0,
        summary: str = "auto",
        track_locals: bool = True,
        native: bool = True,
        track_clients: bool = True,
        max_sites: int = 10_000,
        max_live_refs: int = 200_000,
        log_level: str = "WARNING",
        memory_watch: bool = True,
        memory_limit: Optional[int] = None,
        memory_warn_at: tuple[float, ...] = (0.7, 0.9),
        memory_interval: float = 1.0,
        problems: tuple[str, ...] = (),
        otel_max_series: int = 500,
        otel_span_rate: int = 10,
        otel_exit_timeout: float = 0.4,
        cgroup_root: str = "/sys/fs/cgroup",
        targets: tuple[str, ...] = (),
        disabled_targets: tuple[str, ...] = (),
        show_internal: bool = False,
        refresh_seconds: float = 60.0,
    ) -> None:
        self.enabled = enabled
        self.threshold = threshold
        self.report_path = report_path
        self.report_interval = report_interval
        self.summary = summary
        self.track_locals = track_locals
        self.native = native
        self.track_clients = track_clients
        self.max_sites = max_sites
        self.max_live_refs = max_live_refs
        self.log_level = log_level
        self.memory_watch = memory_watch
        self.memory_limit = memory_limit
        """Bytes; None: read the cgroup limit; 0: no limit (``none``)."""
        self.memory_warn_at = memory_warn_at
        self.memory_interval = memory_interval
        self.problems = problems
        self.otel_max_series = otel_max_series
        self.otel_span_rate = otel_span_rate
        self.otel_exit_timeout = otel_exit_timeout
        self.cgroup_root = cgroup_root
        self.targets = targets
        """User target specs (``module:attribute``), already validated."""
        self.disabled_targets = disabled_targets
        """Catalog names not to patch; ``("*",)`` for all."""
        self.show_internal = show_internal
        """List stdlib and agent-internal sites that are not suspects (``--all``)."""
        self.refresh_seconds = refresh_seconds
        """A site may make one more instance every this many seconds without filling its
        bucket (a client rebuilt for fresh credentials); 0: no leak."""


class _Reader:
    """Reads typed values from an environment, collecting one problem per bad variable."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self.environ = environ
        self.problems: list[str] = []

    def raw(self, name: str) -> str:
        value = self.environ.get(name, "").strip()
        return value if value else _DEFAULTS[name]

    def _bad(self, name: str, value: str, expected: str) -> None:
        self.problems.append(
            f"{name}={value!r} is not {expected}; "
            + (f"using the default {_DEFAULTS[name]!r}" if _DEFAULTS[name] else "ignoring it")
        )

    def flag(self, name: str) -> bool:
        value = self.raw(name).lower()
        if value in _TRUE:
            return True
        if value in _FALSE:
            return False
        self._bad(name, value, "a boolean (1/0, true/false, yes/no, on/off)")
        return _DEFAULTS[name].lower() in _TRUE

    def number(self, name: str, convert: Callable[[str], float]) -> float:
        """A number within the variable's sane range (``RANGES``): ``inf`` or ``1e10`` seconds
        would overflow a timeout and kill the thread waiting on it."""
        minimum, maximum = RANGES[name]
        value = self.raw(name)
        try:
            number = convert(value)
        except (ValueError, OverflowError):
            number = minimum - 1
        if not minimum <= number <= maximum:  # also rejects NaN
            self._bad(name, value, f"a number in [{minimum:g}, {maximum:g}]")
            return convert(_DEFAULTS[name])
        return number

    def size(self, name: str) -> Optional[int]:
        """A number of bytes with an optional suffix; None when unset; 0 for ``none``."""
        value = self.environ.get(name, "").strip()
        if not value:
            return None
        if value.lower() in ("none", "max", "unlimited"):
            return 0
        size = parse_size(value)
        if size is None:
            self._bad(name, value, "a size in bytes (e.g. 536870912, 512Mi, 1G) or 'none'")
        return size

    def fractions(self, name: str) -> tuple[float, ...]:
        value = self.raw(name)
        try:
            found = sorted({float(part) for part in value.split(",") if part.strip()})
        except ValueError:
            found = []
        if not found or not all(0.0 < f <= 1.0 for f in found):
            self._bad(name, value, "comma-separated fractions in (0, 1]")
            return tuple(float(f) for f in _DEFAULTS[name].split(","))
        return tuple(found)

    def choice(self, name: str, choices: tuple[str, ...]) -> str:
        value = self.raw(name).lower()
        if value in choices:
            return value
        self._bad(name, value, "one of " + ", ".join(choices))
        return _DEFAULTS[name]


def load(environ: Optional[Mapping[str, str]] = None) -> Config:
    """Read the configuration from ``environ`` (default ``os.environ``)."""
    reader = _Reader(os.environ if environ is None else environ)
    report = reader.environ.get("LEAKAGENT_REPORT", "").strip() or None
    level = reader.raw("LEAKAGENT_LOG_LEVEL").upper()
    if level not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
        reader._bad("LEAKAGENT_LOG_LEVEL", level, "a logging level name")
        level = "WARNING"
    # client targets: malformed entries are dropped with one problem each
    specs, spec_problems = targetspec.parse_specs(reader.environ.get("LEAKAGENT_TARGETS", ""))
    reader.problems.extend(spec_problems)
    # names are checked against the catalog by the hooks layer (usertargets.parse_disabled)
    disabled = targetspec.split_names(reader.environ.get("LEAKAGENT_DISABLED_TARGETS", ""))
    return Config(
        enabled=reader.flag("LEAKAGENT_ENABLED"),
        threshold=int(reader.number("LEAKAGENT_THRESHOLD", int)),
        report_path=report,
        report_interval=reader.number("LEAKAGENT_REPORT_INTERVAL", float),
        summary=reader.choice("LEAKAGENT_SUMMARY", SUMMARY_MODES),
        track_locals=reader.flag("LEAKAGENT_TRACK_LOCALS"),
        native=reader.flag("LEAKAGENT_NATIVE"),
        track_clients=reader.flag("LEAKAGENT_TRACK_CLIENTS"),
        max_sites=int(reader.number("LEAKAGENT_MAX_SITES", int)),
        max_live_refs=int(reader.number("LEAKAGENT_MAX_LIVE_REFS", int)),
        log_level=level,
        otel_max_series=int(reader.number("LEAKAGENT_OTEL_MAX_SERIES", int)),
        otel_span_rate=int(reader.number("LEAKAGENT_OTEL_SPAN_RATE", int)),
        otel_exit_timeout=reader.number("LEAKAGENT_OTEL_EXIT_TIMEOUT", float),
        cgroup_root=reader.raw("LEAKAGENT_CGROUP_ROOT"),
        memory_watch=reader.flag("LEAKAGENT_MEMORY_WATCH"),
        memory_limit=reader.size("LEAKAGENT_MEMORY_LIMIT"),
        memory_warn_at=reader.fractions("LEAKAGENT_MEMORY_WARN_AT"),
        memory_interval=reader.number("LEAKAGENT_MEMORY_INTERVAL", float),
        refresh_seconds=reader.number("LEAKAGENT_REFRESH_SECONDS", float),
        show_internal=reader.flag("LEAKAGENT_SHOW_INTERNAL"),
        problems=tuple(reader.problems),  # after every reading above
        targets=tuple(spec.text for spec in specs),
        disabled_targets=disabled,
    )


_UNITS = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12, "p": 10**15}


def parse_size(text: str) -> Optional[int]:
    """Bytes from ``536870912``, ``512Mi``, ``1G``, ``1.5GiB``, ``64k``; None if malformed.

    k/M/G/T/P are powers of 1000 and Ki/Mi/Gi/Ti/Pi powers of 1024 (as in Kubernetes);
    letters are case-insensitive and a trailing ``B`` is allowed. No regex: this runs at
    start-up, where ``import re`` would cost time.
    """
    value = text.strip().lower()
    if value.endswith("b"):
        value = value[:-1]
    binary = value.endswith("i")
    if binary:
        value = value[:-1]
    unit = value[-1:] if value[-1:] in _UNITS and value[-1:] else ""
    if unit:
        value = value[:-1]
    elif binary:
        return None  # a lone "i"
    value = value.strip()
    try:
        number = float(value)
    except ValueError:
        return None
    if not (number >= 0) or number == float("inf") or "_" in value:
        return None
    factor = 1024 ** (" kmgtp".index(unit)) if binary else _UNITS[unit]
    return int(number * factor)


def warn_problems(config: Config) -> None:
    """Log each configuration problem once."""
    for problem in config.problems:
        log.warning(problem)
