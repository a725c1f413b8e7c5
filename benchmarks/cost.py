"""Per-creation cost, contention, kept-alive memory and earliness, trustworthy on a busy machine.

    python benchmarks/cost.py [--only NAME ...] [--case CASE] [--pairs N] [-o results/cost.json]

* **instructions** (``valgrind --tool=callgrind``): each case runs at two lengths, N and 2N
  creations, plain and under the agent (container mode: ``PYTHONPATH`` = the sitecustomize
  directory); the difference of the two lengths divided by N is the cost of one creation with
  start-up, imports and exit cancelled out. Instruction counts are exact, whatever the other
  processes on the machine do.
* **contention**: 10 threads creating ``threading.local()`` as fast as they can, wall time,
  plain and agent runs interleaved (A B A B ...), medians and the ratio of the medians.
* **kept-alive**: 1,000,000 ``threading.local()`` kept in a list; peak RSS (``ru_maxrss``)
  of the child, plain vs agent.
* **seed**: ``examples/seed_buggy.py`` at 2,000 tasks, process CPU time (user + system of
  the child), interleaved pairs, median ratio.
* **seed-instructions**: the same workload under callgrind, whole runs at 2,000 tasks, two
  pairs: the pooled ratio of the totals (~20 min).
* **first-warning**: the seed's bug in 8/32/64-thread pools: seconds from the start of the
  pool to the first ``leakagent:`` line, and the creations it had made by then.

``--fast-path python`` measures the agent with its pure-Python ``threading.local`` fast path
(``LEAKAGENT_NATIVE=0``) instead of the C one it uses where it was built; the results go to
``results/cost-python.json`` unless ``-o`` says otherwise.

Standard library only; the interpreter running it must have the agent and the client
libraries installed (the project's test venv).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

from exit_otlp import compile_bytecode  # a sibling script: benchmarks/ is on sys.path

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable

INSTRUCTION_CASES = {
    # name: (setup, statement, N)
    "threading.local()": ("import threading", "threading.local()", 4000),
    "threading.local subclass()": (
        "import threading\nclass Ctx(threading.local):\n    pass",
        "Ctx()",
        4000,
    ),
    "requests.Session()": ("import requests", "requests.Session()", 300),
    # redis: the median of three lengths. Each client leaves its ConnectionPool to the cyclic
    # collector, so where the collections fall in the two runs moves one difference by
    # 5 to 10k either way (1,000 / 1,500 / 2,000 read +27.4k / +26.2k / +16.7k on the same tree)
    "redis.Redis()": (
        "import redis",
        "redis.Redis(host='127.0.0.1', port=1)",
        (1000, 1500, 2000),
    ),
    # the same with the set-up's heap frozen (gc.freeze()): a full collection then walks only
    # what the loop made, so where the collections fall stops moving the difference by
    # thousands; what the agent's own start-up objects add to each full collection (its GC
    # tax, the warm-boto3 row) is left out of this reading
    "redis.Redis(), heap frozen": (
        "import redis, gc\ngc.collect()\ngc.freeze()",
        "redis.Redis(host='127.0.0.1', port=1)",
        (1000, 1500, 2000),
    ),
    "warm boto3.client()": (
        "import boto3\nkw = dict(region_name='us-east-1', aws_access_key_id='t', "
        "aws_secret_access_key='t')\nboto3.client('s3', **kw)",
        "boto3.client('s3', **kw)",
        20,
    ),
}


def sitecustomize_dir() -> str:
    leakagent = Path(PY).with_name("leakagent")
    return subprocess.check_output([str(leakagent), "--sitecustomize-dir"], text=True).strip()


AGENT_ENV: dict[str, str] = {}
"""Set for every agent run (``--fast-path python``: ``LEAKAGENT_NATIVE=0``)."""


def fast_path_in_use() -> str:
    """Which ``threading.local`` fast path an agent run of this interpreter uses."""
    probe = "import threading; from leakagent.hooks import threadlocal; "
    probe += "print('c' if threadlocal.uses_native(threading.local) else 'python')"
    done = subprocess.run([PY, "-c", probe], env=env_for(True), capture_output=True, text=True)
    return done.stdout.strip() or f"unknown ({done.stderr.strip()[-200:]})"


def env_for(agent: bool, **extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("LEAKAGENT_", "OTEL_")) and k != "PYTHONPATH"
    }
    env["PYTHONHASHSEED"] = "0"  # the same hashing in every run: counts repeat exactly
    env["LEAKAGENT_SUMMARY"] = "never"
    env["LEAKAGENT_LOG_LEVEL"] = "ERROR"
    if agent:
        env["PYTHONPATH"] = sitecustomize_dir()
        env.update(AGENT_ENV)
    env.update(extra)
    return env


def callgrind_instructions(code: str, env: dict[str, str]) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "cg.out"
        subprocess.run(
            ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", PY, "-c", code],
            env=env,
            check=True,
            capture_output=True,
        )
        text = out.read_text()
    match = re.search(r"^(?:summary|totals):\s+(\d+)", text, re.M)
    if match is None:
        raise RuntimeError("no callgrind summary")
    return int(match.group(1))


def per_creation(setup: str, statement: str, n: int, agent: bool) -> float:
    def program(count: int) -> str:
        # The objects are dropped at once: what a program that churns them pays. The set-up
        # ends with a full collection: the first one after the imports is a one-off (~1 ms)
        # that falls into one run length and not the other, and the agent's few extra
        # allocations move it earlier, which the difference would count as a per-creation cost.
        return (
            f"{setup}\nimport gc\ngc.collect()\n"
            f"for _ in range({count}):\n    {statement}\n"
        )

    env = env_for(agent)
    short = callgrind_instructions(program(n), env)
    long = callgrind_instructions(program(2 * n), env)
    return (long - short) / n


def bench_instructions(cases: list[str] | None = None) -> dict[str, dict[str, object]]:
    results = {}
    for name, (setup, statement, lengths) in INSTRUCTION_CASES.items():
        if cases and not any(case in name for case in cases):
            continue
        pairs = []
        for n in lengths if isinstance(lengths, tuple) else (lengths,):
            plain = per_creation(setup, statement, n, agent=False)
            agent = per_creation(setup, statement, n, agent=True)
            pairs.append((agent - plain, plain, agent, n))
            print(f"  {name} at {n}: plain {plain:,.0f}, agent {agent:,.0f}", flush=True)
        added, plain, agent, _ = sorted(pairs)[len(pairs) // 2]  # the median difference
        results[name] = {
            "plain": plain,
            "agent": agent,
            "added": added,
            "each": [{"n": n, "added": a} for a, _, _, n in pairs],
        }
        print(f"{name}: plain {plain:,.0f}, agent {agent:,.0f}, +{added:,.0f}", flush=True)
    return results


CONTENTION = """
import threading, time
N = 100_000
start = threading.Barrier(11)
def work():
    start.wait()
    local = threading.local
    for _ in range(N):
        local()
threads = [threading.Thread(target=work) for _ in range(10)]
for t in threads: t.start()
start.wait()
t0 = time.perf_counter()
for t in threads: t.join()
print(time.perf_counter() - t0)
"""


def run_child(code: str, env: dict[str, str]) -> tuple[str, float, int]:
    """stdout, CPU seconds (user + system) and peak RSS (KiB) of one child."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    result = subprocess.run([PY, "-c", code], env=env, check=True, capture_output=True, text=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return result.stdout, cpu, after.ru_maxrss


def interleaved(code: str, pairs: int, measure: str) -> dict[str, object]:
    plain, agent = [], []
    for _ in range(pairs):
        for runs, is_agent in ((plain, False), (agent, True)):
            stdout, cpu, _ = run_child(code, env_for(is_agent))
            runs.append(float(stdout.split()[-1]) if measure == "stdout" else cpu)
    p, a = statistics.median(plain), statistics.median(agent)
    return {"plain": plain, "agent": agent, "plain_median": p, "agent_median": a, "ratio": a / p}


KEPT = """
import resource, threading
kept = [threading.local() for _ in range(1_000_000)]
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def bench_kept_alive() -> dict[str, float]:
    plain = int(run_child(KEPT, env_for(False))[0].split()[-1])
    agent = int(run_child(KEPT, env_for(True))[0].split()[-1])
    return {"plain_kib": plain, "agent_kib": agent, "added_mib": (agent - plain) / 1024}


SEED = (ROOT / "examples" / "seed_buggy.py").read_text()


def seed_program(tasks: int, threads: int) -> str:
    source = SEED.replace("TASKS = 400", f"TASKS = {tasks}").replace(
        "THREADS = 8", f"THREADS = {threads}"
    )
    return source.replace('if __name__ == "__main__":', "if True:")


def bench_seed_instructions(
    tasks: int = 2000, threads: int = 8, pairs: int = 2
) -> dict[str, object]:
    """The seed workload in instructions: whole runs (start-up included), plain and agent,
    ``pairs`` times. Not a difference of two lengths: callgrind runs the threads one at a
    time in an order that varies, which moves plain's per-task figure by ~15 % between a 200-
    and a 400-task run; the whole-run totals vary by 0.3-0.6 %. ``ratio`` is pooled (sum of
    the agent's totals over the sum of plain's)."""
    plain: list[int] = []
    agent: list[int] = []
    for _ in range(pairs):
        for runs, is_agent in ((plain, False), (agent, True)):
            runs.append(callgrind_instructions(seed_program(tasks, threads), env_for(is_agent)))
    return {
        "tasks": tasks,
        "plain": plain,
        "agent": agent,
        "pair_ratios": [a / p for p, a in zip(plain, agent)],
        "ratio": sum(agent) / sum(plain),
    }


FIRST_WARNING = textwrap.dedent("""
    import sys, time
    T0 = None
    import concurrent.futures as cf
    _submit = cf.ThreadPoolExecutor.__init__
    def init(self, *a, **k):
        global T0
        T0 = time.monotonic()
        print(f"POOL {time.monotonic()}", file=sys.stderr, flush=True)
        _submit(self, *a, **k)
    cf.ThreadPoolExecutor.__init__ = init
""")


def bench_first_warning(threads: int) -> dict[str, float]:
    code = FIRST_WARNING + seed_program(1000, threads)
    # the time of each stderr line as it arrives
    proc = subprocess.Popen(
        [PY, "-u", "-c", code],
        env=env_for(True, LEAKAGENT_LOG_LEVEL="WARNING"),
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stderr is not None
    pool_at = warned_at = None
    created = 0
    for line in proc.stderr:
        now = time.monotonic()
        if line.startswith("POOL ") and pool_at is None:
            pool_at = now
        elif line.startswith("leakagent:") and " created " in line and warned_at is None:
            warned_at = now
            created = int(re.search(r"created (\d+) times", line).group(1))  # type: ignore[union-attr]
    proc.wait()
    if pool_at is None or warned_at is None:
        return {"seconds": float("nan"), "created": 0}
    return {"seconds": warned_at - pool_at, "created": created}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--only", nargs="*", default=None)
    parser.add_argument("--pairs", type=int, default=7)
    parser.add_argument(
        "--case", action="append", help="only the instruction cases whose name contains CASE"
    )
    parser.add_argument(
        "--fast-path", choices=("c", "python"), default="c",
        help="python: the agent's pure-Python threading.local fast path (LEAKAGENT_NATIVE=0)",
    )
    parser.add_argument("-o", "--output")
    options = parser.parse_args()
    if options.fast_path == "python":
        AGENT_ENV["LEAKAGENT_NATIVE"] = "0"
    name = "cost.json" if options.fast_path == "c" else "cost-python.json"
    options.output = options.output or str(ROOT / "benchmarks" / "results" / name)
    everything = [
        "instructions", "contention", "kept-alive", "seed", "seed-instructions", "first-warning"
    ]
    wanted = set(options.only or everything)
    results: dict[str, object] = {"python": sys.version.split()[0], "started": time.time()}
    results["fast_path"] = fast_path_in_use()
    print("fast path:", results["fast_path"], flush=True)
    # leakagent's .pyc, as a wheel install has them: without them (an editable install under
    # PYTHONDONTWRITEBYTECODE) every agent run compiles the package, +240M instructions of
    # start-up, which the two-length differences cancel but the seed's whole runs do not
    compile_bytecode(PY, sitecustomize_dir())
    if "instructions" in wanted:
        results["instructions"] = bench_instructions(options.case)
    if "contention" in wanted:
        results["contention"] = interleaved(CONTENTION, options.pairs, "stdout")
        print("contention", results["contention"], flush=True)
    if "kept-alive" in wanted:
        results["kept_alive"] = bench_kept_alive()
        print("kept-alive", results["kept_alive"], flush=True)
    if "seed" in wanted:
        results["seed"] = interleaved(seed_program(2000, 8), max(options.pairs // 2, 3), "cpu")
        print("seed", results["seed"], flush=True)
    if "seed-instructions" in wanted:
        results["seed_instructions"] = bench_seed_instructions()
        print("seed-instructions", results["seed_instructions"], flush=True)
    if "first-warning" in wanted:
        results["first_warning"] = {str(n): bench_first_warning(n) for n in (8, 32, 64)}
        print("first-warning", results["first_warning"], flush=True)
    output = Path(options.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    if output.exists() and options.only:  # a partial run updates the last full one
        previous = json.loads(output.read_text())
        for key, value in results.items():
            if key in ("python", "started"):
                continue
            if key == "instructions" and options.case and isinstance(previous.get(key), dict):
                previous[key].update(value)  # some cases: the others stay as measured
            else:
                previous[key] = value
        results = previous
    output.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
