"""Instructions per ``threading.local()`` creation, plain and under the agent (callgrind).

Usage: python benchmarks/creation_instructions.py [N]

Each variant runs a program creating N locals (and N subclass instances) and the same program
creating none, under ``valgrind --tool=callgrind``; the difference divided by N is the cost of
one creation, free of start-up noise. Variants: plain Python; the counting class alone with a
no-op hook (this module's cost: hooks/threadlocal.py); the full agent in container mode (the
class plus the tracker's record and the call-site lookup).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

PROGRAM = """
import sys, threading
{setup}
class Sub(threading.local):
    pass
n = int(sys.argv[1]); kind = sys.argv[2]
keep = []
make = threading.local if kind == "local" else Sub
for _ in range(n):
    keep.append(make())
"""

NOOP_HOOK = (
    "from leakagent.hooks import threadlocal\n"
    "threadlocal.patch(threading, lambda cls, obj: None)"
)


def instructions(program: str, n: int, kind: str, env: dict[str, str]) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "cg.out")
        script = os.path.join(tmp, "p.py")
        with open(script, "w") as f:
            f.write(program)
        result = subprocess.run(
            ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
             sys.executable, script, str(n), kind],
            env=env, capture_output=True, text=True, check=True,
        )
        found = re.search(r"Collected : (\d+)", result.stderr)
        assert found, result.stderr
        return int(found.group(1))


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    base = {k: v for k, v in os.environ.items()
            if not k.startswith("LEAKAGENT_") and k != "PYTHONPATH"}
    agent_env = dict(base, PYTHONPATH=os.path.join(ROOT, "sitecustomize"))
    variants = [
        ("plain", PROGRAM.format(setup=""), base),
        ("counting class, no-op hook", PROGRAM.format(setup=NOOP_HOOK), base),
        ("agent (container mode)", PROGRAM.format(setup=""), agent_env),
    ]
    rows = {}
    for kind in ("local", "subclass"):
        for name, program, env in variants:
            cost = (instructions(program, n, kind, env) - instructions(program, 0, kind, env)) / n
            rows[(kind, name)] = cost
            plain = rows[(kind, "plain")]
            print(f"{kind:9} {name:28} {cost:9.0f} instructions/creation "
                  f"(+{cost - plain:.0f} over plain)", flush=True)


if __name__ == "__main__":
    main()
