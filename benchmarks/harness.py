"""Plumbing of the benchmark runner: venvs, environments, timed child processes, the machine.

Standard library only: ``run.py`` may be started by any Python 3.9+; everything that is
measured runs in the benchmark venvs.
"""

from __future__ import annotations

import json
import os
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BENCH = REPO / "benchmarks"

# What the benchmark venvs need besides the project itself. The main venv sees the system
# site-packages (this machine's boto3, OpenTelemetry...); pip only fills what is missing.
MAIN_REQUIREMENTS = [
    "pyperf",
    "memray",
    "boto3",
    "requests",
    "opentelemetry-distro",
    "opentelemetry-exporter-otlp",
    "opentelemetry-exporter-prometheus",
    "py-spy",
    "pyinstrument",
]
CLEAN_REQUIREMENTS = [
    "memray",
    "opentelemetry-distro",
    "opentelemetry-exporter-otlp",
    "opentelemetry-exporter-prometheus",
]
VERSIONED = [
    "leakagent",
    "wrapt",
    "pyperf",
    "memray",
    "opentelemetry-sdk",
    "opentelemetry-instrumentation",
    "opentelemetry-distro",
    "opentelemetry-exporter-otlp-proto-grpc",
    "opentelemetry-exporter-otlp-proto-http",
    "opentelemetry-exporter-prometheus",
    "grpcio",
    "boto3",
    "botocore",
    "requests",
    "py-spy",
]


GNU_TIME = "/usr/bin/time" if os.access("/usr/bin/time", os.X_OK) else None


def log(message: str) -> None:
    sys.stderr.write(f"[bench {time.strftime('%H:%M:%S')}] {message}\n")
    sys.stderr.flush()


class Venv:
    """A virtual environment the benchmarks run in."""

    def __init__(self, path: Path, name: str, system_site: bool) -> None:
        self.path = path
        self.name = name
        self.system_site = system_site

    @property
    def bin(self) -> Path:
        return self.path / "bin"

    @property
    def python(self) -> str:
        return str(self.bin / "python")

    def tool(self, name: str) -> str:
        return str(self.bin / name)

    def exists(self) -> bool:
        return (self.bin / "python").exists()

    def setup(self, requirements: list[str], *, reinstall: bool) -> None:
        """Create the venv if needed, fill in requirements, install this tree (not editable)."""
        env = child_env_base(None)
        if not self.exists():
            log(f"creating venv {self.path} ({self.name})")
            command = [sys.executable, "-m", "venv", str(self.path)]
            if self.system_site:
                command.insert(3, "--system-site-packages")
            subprocess.run(command, check=True, env=env)
            reinstall = True
        if not reinstall:
            return
        pip = [self.python, "-m", "pip", "install", "-q", "--disable-pip-version-check"]
        log(f"installing the project and tools into {self.path}")
        subprocess.run([*pip, str(REPO), *requirements], check=True, env=env)
        # the project itself, rebuilt from this tree even when its version did not change
        subprocess.run(
            [*pip, "--no-deps", "--force-reinstall", str(REPO)],
            check=True,
            env=env,
        )

    def run_python(self, code: str) -> str:
        result = subprocess.run(
            [self.python, "-c", code],
            check=True,
            capture_output=True,
            text=True,
            env=child_env_base(self),
            cwd=tempfile.gettempdir(),
        )
        return result.stdout.strip()

    def sitecustomize_dir(self) -> str:
        return subprocess.run(
            [self.tool("leakagent"), "--sitecustomize-dir"],
            check=True,
            capture_output=True,
            text=True,
            env=child_env_base(self),
        ).stdout.strip()

    def versions(self) -> dict[str, str]:
        code = (
            "import json, importlib.metadata as m\n"
            f"names = {VERSIONED!r}\n"
            "out = {}\n"
            "for n in names:\n"
            "    try: out[n] = m.version(n)\n"
            "    except m.PackageNotFoundError: out[n] = 'not installed'\n"
            "print(json.dumps(out))\n"
        )
        return json.loads(self.run_python(code))

    def has_telemetry(self) -> bool:
        code = "import importlib.util as u; print(u.find_spec('leakagent.outputs.telemetry') is not None)"
        return self.run_python(code) == "True"


def child_env_base(venv: Venv | None) -> dict[str, str]:
    """The environment of every measured process: no agent, no OTel settings, .pyc written."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("LEAKAGENT_", "OTEL_", "PYTHON", "MEMRAY_"))
        and key not in ("VIRTUAL_ENV", "WRAPT_DISABLE_EXTENSIONS")
    }
    if venv is not None:
        env["PATH"] = f"{venv.bin}{os.pathsep}{env.get('PATH', '')}"
        env["VIRTUAL_ENV"] = str(venv.path)
    return env


# -- timed runs -----------------------------------------------------------------------------


class RunResult:
    """One process run: wall time, first stdout line, first matching stderr line, peak RSS."""

    __slots__ = ("cpu", "first_match", "first_stdout", "maxrss_kib", "rc", "stderr", "wall")

    def __init__(self) -> None:
        self.wall = 0.0
        self.cpu = 0.0
        self.first_stdout: float | None = None
        self.first_match: float | None = None
        self.maxrss_kib = 0
        self.rc = 0
        self.stderr = ""

    def as_dict(self) -> dict[str, object]:
        return {
            "wall": self.wall,
            "cpu": self.cpu,
            "first_stdout": self.first_stdout,
            "first_match": self.first_match,
            "maxrss_kib": self.maxrss_kib,
            "rc": self.rc,
        }


def run_once(
    argv: list[str],
    env: dict[str, str],
    *,
    cwd: str | Path = REPO,
    stderr_match: str | None = None,
    timeout: float = 900.0,
) -> RunResult:
    """Run ``argv`` once; times are seconds from just before the fork.

    Peak RSS is the program's ``ru_maxrss``, reported by GNU time (``/usr/bin/time``, Debian
    package ``time``) when present; launchers ``exec`` the program, so it is the peak of the
    whole chain (``memray run`` and ``opentelemetry-instrument`` included).
    """
    result = RunResult()
    stderr_lines: list[str] = []
    rss_file = None
    if GNU_TIME:
        # ru_maxrss of a child forked from this (big) process starts at our own RSS: let the
        # small GNU time fork it and report its peak instead.
        handle, rss_file = tempfile.mkstemp(prefix="rss-", suffix=".txt")
        os.close(handle)
        argv = [GNU_TIME, "-q", "-f", "%M", "-o", rss_file, *argv]
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        argv,
        env=env,
        cwd=str(cwd),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )

    def read_stdout() -> None:
        assert proc.stdout is not None
        for _line in proc.stdout:
            if result.first_stdout is None:
                result.first_stdout = time.perf_counter() - t0

    def read_stderr() -> None:
        assert proc.stderr is not None
        for raw in proc.stderr:
            line = raw.decode("utf-8", "replace")
            if stderr_match and result.first_match is None and stderr_match in line:
                result.first_match = time.perf_counter() - t0
            if len(stderr_lines) < 200:
                stderr_lines.append(line)

    readers = [threading.Thread(target=read_stdout), threading.Thread(target=read_stderr)]
    for reader in readers:
        reader.daemon = True
        reader.start()
    deadline = time.monotonic() + timeout
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        if time.monotonic() > deadline:
            proc.kill()
            pid, status, usage = os.wait4(proc.pid, 0)
            break
        time.sleep(0.0005)
    result.wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    for reader in readers:
        reader.join(5)
    result.rc = proc.returncode
    result.maxrss_kib = usage.ru_maxrss
    result.cpu = usage.ru_utime + usage.ru_stime  # the program's (and GNU time's) CPU time
    if rss_file is not None:
        try:
            result.maxrss_kib = int(Path(rss_file).read_text().split()[-1])
        except (OSError, ValueError, IndexError):
            pass
        os.unlink(rss_file)
    result.stderr = "".join(stderr_lines)
    if result.rc != 0:
        log(f"exit {result.rc}: {shlex.join(argv)}\n{result.stderr[-2000:]}")
    return result


def hyperfine(
    commands: list[tuple[str, list[str], dict[str, str]]],
    *,
    base_env: dict[str, str],
    runs: int,
    warmup: int,
    batches: int = 5,
    cwd: str | Path = REPO,
) -> dict[str, dict[str, object]]:
    """Time whole commands with hyperfine (no shell); ``env`` carries each command's variables.

    Every command, the plain one included, starts with ``env`` so they all pay the same exec.
    hyperfine runs one command after the other; so that a burst of load from other processes
    does not land on one command only, the runs are split into ``batches`` hyperfine calls,
    each with the commands in a rotated order, and the times of all batches are pooled.
    Returns label -> {median, mean, stddev, min, max, times} in seconds.
    """
    times: dict[str, list[float]] = {label: [] for label, _, _ in commands}
    per_batch = max(1, -(-runs // batches))
    with tempfile.TemporaryDirectory() as tmp:
        export = Path(tmp) / "hyperfine.json"
        for batch in range(batches):
            shift = batch % len(commands)
            order = commands[shift:] + commands[:shift]
            argv = [
                "hyperfine",
                "-N",
                "--ignore-failure",  # our own runner counts and logs failing runs
                "--style",
                "none",
                "--warmup",
                str(warmup),
                "--runs",
                str(per_batch),
                "--export-json",
                str(export),
            ]
            for label, command, extra in order:
                assignments = [f"{key}={value}" for key, value in extra.items()]
                argv += ["-n", label, shlex.join(["env", *assignments, *command])]
            subprocess.run(argv, check=True, env=base_env, cwd=str(cwd), stdout=subprocess.DEVNULL)
            data = json.loads(export.read_text())
            for (label, _, _), entry in zip(order, data["results"]):
                times[label].extend(entry["times"])
    out: dict[str, dict[str, object]] = {}
    for label, values in times.items():
        out[label] = {
            "median": statistics.median(values),
            "mean": statistics.fmean(values),
            "stddev": statistics.stdev(values) if len(values) > 1 else 0.0,
            "min": min(values),
            "max": max(values),
            "times": values,
        }
    return out


def hyperfine_version() -> str:
    if shutil.which("hyperfine") is None:
        return "not installed"
    out = subprocess.run(["hyperfine", "--version"], capture_output=True, text=True).stdout
    return out.strip().replace("hyperfine ", "")


# -- the dummy OTLP receiver -----------------------------------------------------------------


class Sink:
    """``otlp_sink.py`` running in the main venv: OTLP/gRPC and OTLP/HTTP on 127.0.0.1."""

    def __init__(self, venv: Venv) -> None:
        self.proc = subprocess.Popen(
            [venv.python, str(BENCH / "otlp_sink.py")],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            stdin=subprocess.DEVNULL,
            text=True,
            env=child_env_base(venv),
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().split()
        ports = dict(item.split("=") for item in line)
        self.grpc_port = int(ports.get("grpc", 0))
        self.http_port = int(ports["http"])

    @property
    def grpc_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.grpc_port}"

    @property
    def http_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def counts(self) -> dict[str, int]:
        url = f"{self.http_endpoint}/counts"
        with urllib.request.urlopen(url, timeout=5) as response:
            return json.loads(response.read())  # type: ignore[no-any-return]

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- the machine ------------------------------------------------------------------------------


def machine() -> dict[str, object]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = "unknown"
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    except OSError:
        pass
    return {
        "cores": os.cpu_count(),
        "cpu": cpu,
        "memory": memory,
        "kernel": platform.release(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "python_implementation": platform.python_implementation(),
    }


def load_average() -> str:
    try:
        return " ".join(f"{value:.2f}" for value in os.getloadavg())
    except OSError:
        return "unknown"


def git_revision() -> str:
    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(REPO), *args], capture_output=True, text=True
        ).stdout.strip()

    revision = git("rev-parse", "--short", "HEAD") or "unknown"
    branch = git("rev-parse", "--abbrev-ref", "HEAD")
    dirty = git("status", "--porcelain", "--untracked-files=no", "--", "src", "sitecustomize")
    return f"{revision} ({branch}{', src modified' if dirty else ''})"
