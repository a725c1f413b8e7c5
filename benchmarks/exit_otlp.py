"""Exit cost of OTLP export when the collector is healthy, down, silent or stuck.

    python benchmarks/exit_otlp.py [--runs 15] [--python PYTHON] [--only grpc,http]

Runs each program in container mode (``PYTHONPATH=$(leakagent --sitecustomize-dir)``) with
only the standard ``OTEL_*`` variables, against four collectors on 127.0.0.1:

* ``healthy``: ``benchmarks/otlp_sink.py`` (answers every export at once);
* ``down``: a closed port (connection refused);
* ``silent``: a TCP listener that accepts connections and never answers;
* ``stuck``: answers the agent's exit probe (an HTTP/2 SETTINGS frame, a response to
  ``HEAD``), then never answers an export: the worst case, the flush runs to the bound.

Programs: ``python -c pass`` (nothing worth exporting) and a program with a finding (a
``threading.local()`` made 60 times at one line: one suspect). Plain ``python`` runs the same
programs with no agent. Every round runs all the variants once each in a rotated order
(interleaved A/B, so load bursts spread over all), and the table shows, per variant, the
median wall time of the whole process, the spread (min-max) and the median minus plain's
(``container``: the agent without OTLP). leakagent's ``.pyc`` files are written first
(``--no-compile`` to skip).
Standard library only (the sink runs in the same interpreter: it needs grpcio and
opentelemetry-proto). Asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
FINDING = (
    "import threading\n"
    "def handle():\n"
    "    return threading.local()\n"
    "kept = [handle() for _ in range(60)]\n"
)
PROGRAMS = {"pass": ["-c", "pass"], "finding": ["-c", FINDING]}
FIRST_LINE = ["-c", "print('first line', flush=True)"]


class Silent:
    """A collector that accepts every connection and never answers."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.kept: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.kept.append(conn)  # held open
            self._accepted(conn)

    def _accepted(self, conn: socket.socket) -> None:
        """Never read from or written to."""


class Stuck(Silent):
    """Answers the exit probe's greeting, then never answers an export (the same as
    ``tests/collectors.py``'s; benchmarks import nothing from the tests)."""

    def _accepted(self, conn: socket.socket) -> None:
        threading.Thread(target=self._greet, args=(conn,), daemon=True).start()

    @staticmethod
    def _greet(conn: socket.socket) -> None:
        try:
            first = conn.recv(4096)
            if first.startswith(b"PRI * HTTP/2.0"):
                conn.sendall(b"\x00\x00\x00\x04\x00\x00\x00\x00\x00")
            elif first.startswith(b"HEAD "):
                conn.sendall(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
        except OSError:
            pass


def closed_port() -> int:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return port


def start_sink() -> tuple[subprocess.Popen[str], int, int]:
    """otlp_sink.py, which prints ``grpc=<port> http=<port>`` once it serves."""
    proc = subprocess.Popen(
        [sys.executable, str(BENCH / "otlp_sink.py")],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    assert proc.stdout is not None
    ports = dict(part.split("=") for part in proc.stdout.readline().split())
    return proc, int(ports["grpc"]), int(ports["http"])


def otlp_env(protocol: str, port: int) -> dict[str, str]:
    return {
        "OTEL_METRICS_EXPORTER": "otlp",
        "OTEL_TRACES_EXPORTER": "otlp",
        "OTEL_LOGS_EXPORTER": "none",
        "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc" if protocol == "grpc" else "http/protobuf",
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{port}",
        "OTEL_EXPORTER_OTLP_INSECURE": "true",
    }


def base_env() -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("LEAKAGENT_", "OTEL_")) and k != "PYTHONPATH"
    }
    env["LEAKAGENT_SUMMARY"] = "never"
    return env


def timed(argv: list[str], env: dict[str, str]) -> float:
    """Seconds from the start of the process to its end.

    A blocking ``wait()`` (``waitpid`` returns as the child ends) with a timer that kills a
    child still alive after 60 s: ``subprocess.run(timeout=...)`` polls with sleeps of up to
    50 ms, which rounded every time above ~65 ms up to the next 50 ms step."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    killer = threading.Timer(60, proc.kill)
    killer.start()
    try:
        proc.wait()
    finally:
        killer.cancel()
    return time.perf_counter() - start


def first_line(argv: list[str], env: dict[str, str]) -> float:
    """Seconds from the start of the process to its first stdout line."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert proc.stdout is not None
    proc.stdout.readline()
    elapsed = time.perf_counter() - start
    proc.stdout.close()
    proc.wait()
    return elapsed


def compile_bytecode(python: str, site_dir: str) -> None:
    """Write leakagent's ``.pyc`` files, as a wheel install does: with
    ``PYTHONDONTWRITEBYTECODE`` set (an editable install in this sandbox) every run compiled
    the package again, ~35 ms of the container-mode figures."""
    package = subprocess.check_output(
        [python, "-c", "import os, leakagent; print(os.path.dirname(leakagent.__file__))"],
        text=True,
    ).strip()
    subprocess.run(
        [python, "-m", "compileall", "-q", package, site_dir],
        stdout=subprocess.DEVNULL, check=False,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--python", default=sys.executable)
    parser.add_argument("--only", default="grpc,http", help="protocols")
    parser.add_argument(
        "--first-line",
        action="store_true",
        help="time to the first stdout line instead (healthy collector only)",
    )
    parser.add_argument(
        "--no-compile",
        action="store_true",
        help="measure the package as it is (by default its .pyc files are written first)",
    )
    args = parser.parse_args()
    launcher = shutil.which("leakagent", path=os.path.dirname(args.python)) or "leakagent"
    site_dir = subprocess.check_output([launcher, "--sitecustomize-dir"], text=True).strip()
    if not args.no_compile:
        compile_bytecode(args.python, site_dir)
    sink, grpc_port, http_port = start_sink()
    silent = Silent()
    stuck = Stuck()
    down = closed_port()
    variants: list[tuple[str, list[str], dict[str, str]]] = []
    measure = timed
    if args.first_line:
        measure = first_line
        variants.append(("first plain", [args.python, *FIRST_LINE], base_env()))
        variants.append(
            ("first container", [args.python, *FIRST_LINE], {**base_env(), "PYTHONPATH": site_dir})
        )
        for protocol in args.only.split(","):
            healthy = grpc_port if protocol == "grpc" else http_port
            env = {**base_env(), "PYTHONPATH": site_dir, **otlp_env(protocol, healthy)}
            variants.append((f"first {protocol} healthy", [args.python, *FIRST_LINE], env))
    for program, code in ({} if args.first_line else PROGRAMS).items():
        variants.append((f"{program} plain", [args.python, *code], base_env()))
        variants.append(
            (f"{program} container", [args.python, *code], {**base_env(), "PYTHONPATH": site_dir})
        )
        for protocol in args.only.split(","):
            healthy = grpc_port if protocol == "grpc" else http_port
            for collector, port in (("healthy", healthy), ("down", down),
                                    ("silent", silent.port), ("stuck", stuck.port)):
                env = {**base_env(), "PYTHONPATH": site_dir, **otlp_env(protocol, port)}
                variants.append((f"{program} {protocol} {collector}", [args.python, *code], env))
    times: dict[str, list[float]] = {name: [] for name, _, _ in variants}
    try:
        for _ in range(2):  # warm the page cache and .pyc files
            for _name, argv, env in variants:
                measure(argv, env)
        for round_ in range(args.runs):
            shift = round_ % len(variants)
            for name, argv, env in variants[shift:] + variants[:shift]:
                times[name].append(measure(argv, env))
    finally:
        sink.kill()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"{args.runs} interleaved rounds, {args.python}, load average {load:.1f}")
    print(f"{'variant':<26} {'median ms':>10} {'min-max ms':>14} {'vs plain ms':>12}")
    for name, _, _ in variants:
        program = name.split()[0]
        plain = statistics.median(times[f"{program} plain"])
        values = times[name]
        median = statistics.median(values)
        spread = f"{min(values) * 1000:.0f}-{max(values) * 1000:.0f}"
        print(f"{name:<26} {median * 1000:>10.0f} {spread:>14} {(median - plain) * 1000:>+12.0f}")


if __name__ == "__main__":
    main()
