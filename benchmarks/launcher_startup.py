"""Start-up cost of the ``leakagent`` launcher, interleaved A/B runs.

Usage: python benchmarks/launcher_startup.py [RUNS]

Each round runs, in turn: plain ``python -c pass``; container mode (``PYTHONPATH`` = the
agent's directory) ``python -c pass``; ``leakagent python -c pass``; and ``leakagent
--report R python -c pass``. Interleaving spreads the machine's background load evenly over
the variants. Prints the median and the interquartile range of each, and the launcher's own
cost (launcher minus container mode).
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time


def _time(command: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, env=env, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 40
    launcher = shutil.which("leakagent", path=os.path.dirname(sys.executable)) or "leakagent"
    directory = subprocess.check_output([launcher, "--sitecustomize-dir"], text=True).strip()
    base = {k: v for k, v in os.environ.items()
            if not k.startswith("LEAKAGENT_") and k != "PYTHONPATH"}
    report = os.path.join(tempfile.mkdtemp(), "r.json")
    variants = {
        "plain python -c pass": ([sys.executable, "-c", "pass"], base),
        "container mode": ([sys.executable, "-c", "pass"], dict(base, PYTHONPATH=directory)),
        "leakagent python -c pass": ([launcher, sys.executable, "-c", "pass"], base),
        "leakagent --report R python -c pass": (
            [launcher, "--report", report, sys.executable, "-c", "pass"], base),
    }
    times: dict[str, list[float]] = {name: [] for name in variants}
    for command, env in variants.values():  # warm the caches once
        _time(command, env)
    for _ in range(runs):
        for name, (command, env) in variants.items():
            times[name].append(_time(command, env))
    medians = {}
    for name, values in times.items():
        q = statistics.quantiles(values, n=4)
        medians[name] = statistics.median(values)
        print(f"{name:38} median {medians[name] * 1e3:6.1f} ms  "
              f"IQR {q[0] * 1e3:6.1f}-{q[2] * 1e3:6.1f} ms  ({runs} runs)")
    plain = medians["plain python -c pass"]
    for name in list(variants)[1:]:
        print(f"{name:38} +{(medians[name] - plain) * 1e3:5.1f} ms over plain")
    own = medians["leakagent python -c pass"] - medians["container mode"]
    print(f"{'the launcher alone':38} +{own * 1e3:5.1f} ms (launcher minus container mode)")


if __name__ == "__main__":
    main()
