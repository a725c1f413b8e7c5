"""Peak RSS of a process with 10,000 call sites and no report asked for.

    python benchmarks/exit_rss.py [--runs 3]

The program creates one ``threading.local`` at each of 10,000 generated lines, then exits.
Peak RSS is the child's ``ru_maxrss`` (wait4), so the exit-time work is included.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile

SITES = int(os.environ.get("SITES", "10000"))


def peak_rss_kib(command: list[str], env: dict[str, str]) -> int:
    proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    assert proc.returncode == 0, proc.returncode
    return int(usage.ru_maxrss)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LEAKAGENT_", "OTEL_"))}
    launcher = shutil.which("leakagent", path=os.path.dirname(sys.executable)) or "leakagent"
    with tempfile.TemporaryDirectory() as directory:
        script = os.path.join(directory, "sites.py")
        with open(script, "w") as f:
            f.write("import threading\nkeep = []\n")
            f.writelines(f"keep.append(threading.local())  # {n}\n" for n in range(SITES))
        plain = [peak_rss_kib([sys.executable, script], env) for _ in range(args.runs)]
        agent = [peak_rss_kib([launcher, sys.executable, script], env) for _ in range(args.runs)]
    p, a = statistics.median(plain), statistics.median(agent)
    print(f"plain {p / 1024:.1f} MiB, agent {a / 1024:.1f} MiB, +{(a - p) / 1024:.1f} MiB "
          f"(median of {args.runs}, {SITES} sites, no report)")


if __name__ == "__main__":
    main()
