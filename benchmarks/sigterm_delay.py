"""SIGTERM delay: time from SIGTERM to death of a program busy in one long C call.

    python benchmarks/sigterm_delay.py [--runs 5] [--plain] [--call sum|pbkdf2|sleep]

The program creates 30 ``threading.local`` (a suspect at threshold 10), then makes one long
C call: ``sum(range(6 * 10**8))`` (~8 s, holds the GIL), ``hashlib.pbkdf2_hmac`` with 2**31
rounds (minutes, releases the GIL, never checks for signals) or ``time.sleep(60)``. SIGTERM
is sent 0.5 s into the call.
Prints per run: seconds to death, exit status, whether the final report was written.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

PROGRAM = """
import pathlib, sys, threading
keep = [threading.local() for _ in range(30)]
pathlib.Path(sys.argv[1]).touch()
call = sys.argv[2]
if call == "sum":
    sum(range(6 * 10**8))
elif call == "pbkdf2":
    import hashlib
    hashlib.pbkdf2_hmac("sha256", b"password", b"salt", 2**31 - 1)
else:
    import time
    time.sleep(60)
"""


def one_run(plain: bool, directory: str, call: str) -> tuple[float, int, bool]:
    ready = os.path.join(directory, "ready")
    report = os.path.join(directory, "r.json")
    for path in (ready, report):
        if os.path.exists(path):
            os.unlink(path)
    script = os.path.join(directory, "busy.py")
    with open(script, "w") as f:
        f.write(PROGRAM)
    if plain:
        command = [sys.executable, script, ready, call]
    else:
        launcher = shutil.which("leakagent", path=os.path.dirname(sys.executable)) or "leakagent"
        command = [launcher, "--report", report, "--threshold", "10",
                   sys.executable, script, ready, call]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while not os.path.exists(ready):
        time.sleep(0.01)
    time.sleep(0.5)
    start = time.perf_counter()
    proc.send_signal(signal.SIGTERM)
    status = proc.wait()
    elapsed = time.perf_counter() - start
    final = False
    if os.path.exists(report):
        with open(report) as f:
            final = bool(json.load(f).get("final"))
    return elapsed, status, final


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--plain", action="store_true")
    parser.add_argument("--call", choices=("sum", "pbkdf2", "sleep"), default="sum")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        for _ in range(args.runs):
            elapsed, status, final = one_run(args.plain, directory, args.call)
            print(f"{'plain' if args.plain else 'agent'} {args.call}: died after {elapsed:.3f} s, "
                  f"status {status}, final report {final}")


if __name__ == "__main__":
    main()
