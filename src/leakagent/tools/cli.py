"""The launcher: ``leakagent [options] COMMAND [ARGS...]``.

It puts the agent's sitecustomize directory first on ``PYTHONPATH``, turns its options into
``LEAKAGENT_*`` variables and ``exec``s the command, which keeps the PID, receives signals
itself and exits with its own code.

Start-up matters (the launcher runs before every program it starts): the common form
``leakagent [simple options] COMMAND ...`` is read by :func:`_fast_options` without argparse,
re or shutil, which are imported only for everything else (figures in
``docs/performance.md``).
"""

from __future__ import annotations

import os
import sys

from leakagent._version import __version__
from leakagent.tools.launchcheck import python_flags_blocking_agent

__all__ = ["main", "python_flags_blocking_agent", "sitecustomize_dir", "with_pythonpath"]

TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse
    from collections.abc import Sequence
    from typing import Any, Optional

EXIT_NOT_FOUND = 127
EXIT_NOT_EXECUTABLE = 126
_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
"""The ``leakagent`` package directory (this module is in ``leakagent/tools``)."""


def sitecustomize_dir() -> str:
    """The directory to put on PYTHONPATH: the installed copy, or the source tree's."""
    package = _PACKAGE_DIR
    installed = os.path.join(package, "_sitecustomize")
    if os.path.isfile(os.path.join(installed, "sitecustomize.py")):
        return installed
    source = os.path.normpath(os.path.join(package, os.pardir, os.pardir, "sitecustomize"))
    if os.path.isfile(os.path.join(source, "sitecustomize.py")):
        return source
    raise FileNotFoundError(f"no sitecustomize.py in {installed} or {source}")


def with_pythonpath(current: Optional[str], directory: str) -> str:
    """``directory`` first on a PYTHONPATH value, once; nothing else changes or is added."""
    target = os.path.normcase(os.path.abspath(directory))
    entries = [e for e in (current or "").split(os.pathsep)] if current else []
    kept = [e for e in entries if not e or os.path.normcase(os.path.abspath(e)) != target]
    return os.pathsep.join([directory, *kept])


def _version_action(argparse: Any) -> Any:
    """``--version``: the version, and which ``threading.local`` fast path this install has
    (the C one is built at install time when a compiler is there; ``docs/performance.md``).
    A class made here: the launcher imports argparse only when it needs the parser."""

    class Version(argparse.Action):  # type: ignore[misc]
        def __call__(self, parser: Any, namespace: Any, values: Any, option: Any = None) -> None:
            from leakagent.core import config
            from leakagent.hooks import threadlocal

            native = threadlocal.native_new() is not None
            path = "C" if native else "pure Python (the C extension was not built)"
            if native and not config.load(os.environ).native:  # read as the agent reads it
                path = "pure Python (LEAKAGENT_NATIVE=0)"
            print(f"leakagent {__version__} (threading.local fast path: {path})")
            parser.exit()

    return Version


def _parser() -> argparse.ArgumentParser:
    import argparse

    from leakagent.core.config import SETTINGS, SUMMARY_MODES
    from leakagent.tools.gate import EXIT_SUSPECTS

    settings = "\n".join(
        f"  {s.env} (default {s.default or 'unset'})\n      {s.help}" for s in SETTINGS
    )
    parser = argparse.ArgumentParser(
        prog="leakagent",
        usage=(
            "leakagent [options] COMMAND [ARGS...]\n"
            "       leakagent report REPORT.json [--html OUT.html]"
        ),
        description=(
            "Run COMMAND with the leakagent agent loaded into every Python process it starts. "
            "The agent counts threading.local and client instantiations per call site and "
            "thread, warns when one call site keeps creating them, and reports at exit."
        ),
        epilog=(
            "Each option sets the environment variable named in its help; in a container, "
            "set the variables and PYTHONPATH=$(leakagent --sitecustomize-dir) instead.\n\n"
            "Environment variables:\n" + settings
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add = parser.add_argument
    add(
        "--threshold",
        metavar="N",
        type=int,
        help="suspect at N creations of one kind at one call site beyond one per thread "
        "alive at a time (LEAKAGENT_THRESHOLD, default 40)",
    )
    add(
        "--report",
        metavar="PATH",
        help="write the JSON report to PATH, rewritten "
        "periodically and at exit; {pid} expands to the process id (LEAKAGENT_REPORT)",
    )
    add(
        "--report-interval",
        metavar="SECONDS",
        type=float,
        help="seconds between report rewrites (LEAKAGENT_REPORT_INTERVAL, default 5)",
    )
    add(
        "--summary",
        choices=SUMMARY_MODES,
        help="stderr summary at exit (LEAKAGENT_SUMMARY, default auto: when suspects)",
    )
    add(
        "--all",
        action="store_true",
        dest="show_internal",
        help="also list the standard library's and the agent's own call sites in summaries "
        "and warnings (LEAKAGENT_SHOW_INTERNAL=1)",
    )
    add(
        "--no-locals",
        action="store_true",
        help="do not count threading.local (LEAKAGENT_TRACK_LOCALS=0)",
    )
    add(
        "--no-clients",
        action="store_true",
        help="do not count client constructors (LEAKAGENT_TRACK_CLIENTS=0)",
    )
    add(
        "--max-sites",
        metavar="N",
        type=int,
        help="most call sites tracked (LEAKAGENT_MAX_SITES, default 10000)",
    )
    add(
        "--log-level",
        metavar="LEVEL",
        help="lowest level of the agent's stderr lines (LEAKAGENT_LOG_LEVEL, default WARNING)",
    )
    # -- OpenTelemetry export: the flags only set the standard OTEL_* variables.
    add(
        "--otlp",
        metavar="ENDPOINT",
        nargs="?",
        const="",
        help="export metrics and spans over OTLP (OTEL_TRACES_EXPORTER=otlp, "
        "OTEL_METRICS_EXPORTER=otlp; ENDPOINT sets OTEL_EXPORTER_OTLP_ENDPOINT, default "
        "http://localhost:4317 for grpc, http://localhost:4318 for http/protobuf)",
    )
    add(
        "--otlp-protocol",
        choices=("grpc", "http/protobuf"),
        help="OTLP transport (OTEL_EXPORTER_OTLP_PROTOCOL, default grpc)",
    )
    add(
        "--prometheus",
        metavar="PORT",
        nargs="?",
        const="",
        help="serve metrics on http://127.0.0.1:PORT/metrics (OTEL_METRICS_EXPORTER=prometheus, "
        "OTEL_EXPORTER_PROMETHEUS_PORT, default 9464)",
    )
    add("--service-name", metavar="NAME", help="service name of the telemetry (OTEL_SERVICE_NAME)")
    add(
        "--target",
        metavar="SPEC",
        action="append",
        help="also count this constructor, module:attribute (a class or a factory); "
        "repeatable (LEAKAGENT_TARGETS, added to its value)",
    )
    add(
        "--disable-target",
        metavar="NAME",
        action="append",
        help="do not count this built-in target (a name from docs/targets.md, or *); "
        "repeatable (LEAKAGENT_DISABLED_TARGETS, added to its value)",
    )
    add(
        "--disable", action="store_true", help="run COMMAND without the agent (LEAKAGENT_ENABLED=0)"
    )
    add(
        "--fail-on-suspect",
        nargs="?",
        const="",
        metavar="=CODE",
        help="CI gate: run COMMAND as a child and exit with CODE (default "
        f"{EXIT_SUSPECTS}) when it succeeded but a suspect was found; a failing COMMAND's "
        "own exit code wins (docs/ci-gate.md). Write the code as --fail-on-suspect=CODE",
    )
    add(
        "--sitecustomize-dir",
        action="store_true",
        help="print the directory to put on PYTHONPATH for container mode, and exit",
    )
    add("--version", action=_version_action(argparse), nargs=0,
        help="print the version and which threading.local fast path is in use, and exit")
    add("command", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    return parser


def _environment(options: Any, directory: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = with_pythonpath(env.get("PYTHONPATH"), directory)
    env["LEAKAGENT_ROOT_PID"] = str(os.getpid())  # exec keeps the pid
    values = {
        "LEAKAGENT_THRESHOLD": options.threshold,
        "LEAKAGENT_REPORT": options.report,
        "LEAKAGENT_REPORT_INTERVAL": options.report_interval,
        "LEAKAGENT_SUMMARY": options.summary,
        "LEAKAGENT_MAX_SITES": options.max_sites,
        "LEAKAGENT_LOG_LEVEL": options.log_level,
    }
    for name, value in values.items():
        if value is not None:
            env[name] = str(value)
    if options.report:
        env["LEAKAGENT_REPORT"] = os.path.abspath(options.report)
    if options.show_internal:
        env["LEAKAGENT_SHOW_INTERNAL"] = "1"
    if options.no_locals:
        env["LEAKAGENT_TRACK_LOCALS"] = "0"
    if options.no_clients:
        env["LEAKAGENT_TRACK_CLIENTS"] = "0"
    if options.disable:
        env["LEAKAGENT_ENABLED"] = "0"
    _telemetry_environment(options, env)
    for name, extra in (
        ("LEAKAGENT_TARGETS", options.target),
        ("LEAKAGENT_DISABLED_TARGETS", options.disable_target),
    ):
        if extra:  # added to what the environment already says
            env[name] = ",".join(v for v in (env.get(name, "").strip(), *extra) if v)
    return env


# -- OpenTelemetry export ----------------------------------------------------------------

_ENDPOINT = r"^(https?://\S+|[A-Za-z0-9_.\-\[\]:]+:[0-9]+)$"
OTEL_INSTRUMENT = "opentelemetry-instrument"


def _telemetry_environment(options: Any, env: dict[str, str]) -> None:
    """``--otlp``, ``--prometheus``, ``--service-name``: the standard OTEL_* variables."""
    metrics = []
    if options.otlp is not None:
        env["OTEL_TRACES_EXPORTER"] = "otlp"
        metrics.append("otlp")
        if options.otlp:
            endpoint = options.otlp
            if "://" not in endpoint:  # host:port means plain text on a local network
                endpoint = "http://" + endpoint
            env["OTEL_EXPORTER_OTLP_ENDPOINT"] = endpoint
    if options.prometheus is not None:
        metrics.append("prometheus")
        if options.prometheus:
            env["OTEL_EXPORTER_PROMETHEUS_PORT"] = options.prometheus
    if metrics:
        env["OTEL_METRICS_EXPORTER"] = ",".join(metrics)
    if options.otlp_protocol:
        env["OTEL_EXPORTER_OTLP_PROTOCOL"] = options.otlp_protocol
    if options.service_name:
        env["OTEL_SERVICE_NAME"] = options.service_name


def _optional_values(parser: argparse.ArgumentParser, argv: Sequence[str]) -> list[str]:
    """``--otlp`` and ``--prometheus`` take an optional value: only when it looks like one.

    ``leakagent --otlp python app.py`` must not read ``python`` as the endpoint. Options are
    scanned up to the command (the first word that is neither an option nor its value).
    """
    import argparse
    import re

    endpoint = re.compile(_ENDPOINT)
    takes_value = {
        flag
        for action in parser._actions
        if action.option_strings
        and action.nargs is None
        and action.const is None
        and not isinstance(action, (argparse._StoreTrueAction, argparse._VersionAction))
        for flag in action.option_strings
    }
    result = list(argv)
    index = 0
    while index < len(result):
        arg = result[index]
        if arg in ("--otlp", "--prometheus"):
            following = result[index + 1] if index + 1 < len(result) else ""
            if arg == "--prometheus":
                looks = following.isdigit()
            else:
                looks = bool(endpoint.match(following))
            if looks:
                index += 2
                continue
            result[index] = arg + "="
        elif arg in takes_value:
            index += 1
        elif arg == "--" or not arg.startswith("-"):
            break
        index += 1
    return result


def _through_opentelemetry_instrument(command: list[str]) -> list[str]:
    """``leakagent opentelemetry-instrument [opts] CMD`` -> ``opentelemetry-instrument [opts]
    python -m leakagent CMD``.

    opentelemetry-instrument puts its own sitecustomize first on PYTHONPATH and does not chain
    to the next one, so it would hide the agent's. Run the other way round, leakagent's
    sitecustomize comes first and chains to OpenTelemetry's: both load, once each. The
    leakagent options are already in the environment.
    """
    if not command or os.path.basename(command[0]) != OTEL_INSTRUMENT:
        return command
    index = 1
    while index < len(command) and command[index].startswith("-"):
        arg = command[index]
        index += 1 if ("=" in arg or arg in ("-h", "--help", "--version")) else 2
    if index >= len(command):
        return command
    package_parent = os.path.dirname(_PACKAGE_DIR)
    python_path = [
        os.path.abspath(p) for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p
    ]
    # -E: the inner launcher must not run OpenTelemetry's sitecustomize (start-up cost);
    # only when leakagent is importable without PYTHONPATH.
    flags = [] if package_parent in python_path else ["-E"]
    return [*command[:index], sys.executable, *flags, "-m", "leakagent", *command[index:]]


def _warn_if_the_agent_cannot_load(command: list[str], directory: str, executable: str) -> None:
    """One line when the command line shows the agent will not load (tools/launchcheck.py)."""
    try:
        from leakagent.tools.launchcheck import problem

        found = problem(command, directory, executable)
    except Exception:  # a check of ours must never stop the program from starting
        return
    if found:
        sys.stderr.write(f"leakagent: warning: {found}\n")


class _Options:
    """What the fast path reads: the attributes of the argparse namespace it stands for."""

    command: list[str]

    def __init__(self, **values: Any) -> None:
        self.__dict__.update(values)


_FAST_DEFAULTS: dict[str, Any] = {
    "threshold": None, "report": None, "report_interval": None, "summary": None,
    "max_sites": None, "log_level": None, "no_locals": False, "no_clients": False,
    "disable": False, "otlp": None, "otlp_protocol": None, "prometheus": None,
    "service_name": None, "target": None, "disable_target": None, "show_internal": False,
}
_FAST_VALUES: dict[str, tuple[str, Any]] = {
    "--threshold": ("threshold", int),
    "--report": ("report", str),
    "--report-interval": ("report_interval", float),
    "--summary": ("summary", str),
    "--max-sites": ("max_sites", int),
    "--log-level": ("log_level", str),
}
_FAST_FLAGS = {
    "--no-locals": "no_locals",
    "--no-clients": "no_clients",
    "--disable": "disable",
    "--all": "show_internal",
}
FAST_SUMMARY_MODES = ("auto", "always", "never")
"""core/config.py's SUMMARY_MODES (not imported here: it costs start-up; a test keeps both)."""


def _fast_options(arguments: list[str]) -> Optional[_Options]:
    """The options of ``leakagent [simple options] COMMAND ...`` read without argparse, or
    None for anything else (other options, abbreviations, bad values, ``--``, no command):
    argparse then reads them, and says what is wrong exactly as before."""
    values = dict(_FAST_DEFAULTS)
    index = 0
    while index < len(arguments):
        arg = arguments[index]
        if not arg.startswith("-"):
            break
        if arg in _FAST_FLAGS:
            values[_FAST_FLAGS[arg]] = True
            index += 1
            continue
        name, equals, value = arg.partition("=")
        if name not in _FAST_VALUES:
            return None
        if equals:
            index += 1
        elif index + 1 < len(arguments) and not arguments[index + 1].startswith("-"):
            value = arguments[index + 1]
            index += 2
        else:
            return None
        attribute, convert = _FAST_VALUES[name]
        try:
            values[attribute] = convert(value)
        except ValueError:
            return None
        if attribute == "summary" and value not in FAST_SUMMARY_MODES:
            return None
    if index >= len(arguments):
        return None
    return _Options(command=arguments[index:], **values)


def _which(name: str) -> Optional[str]:
    """``shutil.which`` for POSIX, without importing shutil (start-up)."""
    def runnable(path: str) -> bool:
        return os.path.exists(path) and os.access(path, os.F_OK | os.X_OK) and not (
            os.path.isdir(path)
        )

    if os.path.dirname(name):
        return name if runnable(name) else None
    for directory in os.environ.get("PATH", os.defpath).split(os.pathsep):
        candidate = os.path.join(directory or os.curdir, name)
        if runnable(candidate):
            return candidate
    return None


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of the ``leakagent`` command."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments[:1] == ["report"]:  # a program named "report": leakagent -- report
        from leakagent.tools.viewer import main as view

        try:
            code = view(arguments[1:])
            sys.stdout.flush()
            return code
        except BrokenPipeError:  # `leakagent report r.json | head`: the reader has left
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no 2nd error
            return 1
    fast = _fast_options(arguments)
    if fast is not None:
        return _launch(fast, fast.command, None)
    return _main_with_argparse(arguments)


def _main_with_argparse(arguments: list[str]) -> int:
    from leakagent.tools.gate import EXIT_SUSPECTS, parse_code

    parser = _parser()
    # A bare --fail-on-suspect must not take the command's first word for its CODE: write it
    # --fail-on-suspect= (one token for one, so the command is still the list's tail).
    options = parser.parse_args(
        _optional_values(
            parser, ["--fail-on-suspect=" if a == "--fail-on-suspect" else a for a in arguments]
        )
    )
    if options.sitecustomize_dir:
        try:
            print(sitecustomize_dir())
        except FileNotFoundError as exc:
            sys.stderr.write(f"leakagent: broken installation: {exc}\n")
            return 1
        return 0
    command = arguments[len(arguments) - len(options.command) :] if options.command else []
    gate_code = None
    if options.fail_on_suspect is not None:
        value = options.fail_on_suspect
        gate_code = EXIT_SUSPECTS if value == "" else parse_code(value)
        if gate_code is None:
            parser.error(f"--fail-on-suspect={value}: the exit code must be 1-255")
    if command and command[0] == "--":
        command = command[1:]
    if not command:
        parser.print_usage(sys.stderr)
        sys.stderr.write("leakagent: error: no command given (e.g. leakagent python app.py)\n")
        return 2
    return _launch(options, command, gate_code)


def _launch(options: Any, command: list[str], gate_code: Optional[int]) -> int:
    """Run ``command`` with the agent: exec it (or run it under the CI gate)."""
    try:
        directory = sitecustomize_dir()
    except FileNotFoundError as exc:
        sys.stderr.write(f"leakagent: broken installation: {exc}\n")
        return 1
    executable = _which(command[0])
    if executable is None:
        sys.stderr.write(f"leakagent: command not found: {command[0]}\n")
        return EXIT_NOT_FOUND
    command = _through_opentelemetry_instrument(command)
    env = _environment(options, directory)
    _warn_if_the_agent_cannot_load(command, directory, executable)
    if gate_code is not None:
        from leakagent.tools import gate

        return gate.run(executable, command, env, gate_code)
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execve(executable, command, env)
    except PermissionError as exc:
        sys.stderr.write(f"leakagent: cannot run {command[0]}: {exc.strerror}\n")
        return EXIT_NOT_EXECUTABLE
    except OSError as exc:
        sys.stderr.write(f"leakagent: cannot run {command[0]}: {exc.strerror or exc}\n")
        return EXIT_NOT_EXECUTABLE
    return 0  # pragma: no cover - execve does not return
