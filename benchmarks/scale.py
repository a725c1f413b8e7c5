"""Scale: many threading.local() creations over many call sites on many threads.

Each call site is a function compiled from its own (fictitious) file name, so the agent sees
``--sites`` distinct call sites. The work runs in ``--phases`` equal phases; each phase starts
``--threads`` threads (the same ones throughout, or new ones with ``--thread-churn``) that
together make 1/phases of the ``--creations``, spread over every
site. After each phase the script measures the process RSS and, when the agent is loaded, the
agent's state (sites tracked, and with ``--tracemalloc`` the bytes allocated by leakagent's own
modules that are still alive). Prints one JSON object on stdout.

Run it plain, or with the agent loaded by sitecustomize (``PYTHONPATH=$(leakagent
--sitecustomize-dir)``); ``run.py`` does both.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time


def rss_kib() -> tuple[int, int]:
    """(VmRSS, VmHWM) of this process in KiB."""
    values = {}
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(("VmRSS:", "VmHWM:")):
                key, value = line.split(":", 1)
                values[key] = int(value.split()[0])
    return values.get("VmRSS", 0), values.get("VmHWM", 0)


def make_sites(count: int) -> list:  # type: ignore[type-arg]
    sites = []
    for index in range(count):
        namespace = {"threading": threading}
        code = compile(
            "def site():\n    return threading.local()\n",
            f"/srv/app/generated/module_{index:05d}.py",
            "exec",
        )
        exec(code, namespace)
        sites.append(namespace["site"])
    return sites


def worker(  # type: ignore[type-arg]
    sites: list, start: int, count: int, phases: int, go: threading.Barrier, done: threading.Barrier
) -> None:
    size = len(sites)
    index = start
    for _ in range(phases):
        go.wait()
        for _ in range(count):
            sites[index]()
            index += 1
            if index == size:
                index = 0
        done.wait()


def agent_state(traced: bool) -> dict[str, object]:
    try:
        from leakagent.runtime.agent import get_agent
    except ImportError:
        return {"agent": False}
    agent = get_agent()
    if agent is None:
        return {"agent": False}
    totals = agent.tracker.totals()
    state: dict[str, object] = {
        "agent": True,
        "sites": totals["sites"],
        "created": totals["created"],
        "overflowed": totals["overflowed"],
        "watched": totals["watched"],
    }
    if traced:
        import gc
        import tracemalloc

        gc.collect()
        snapshot = tracemalloc.take_snapshot().filter_traces(
            [tracemalloc.Filter(True, "*/leakagent/*")]
        )
        state["agent_bytes"] = sum(stat.size for stat in snapshot.statistics("filename"))
    return state


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--creations", type=int, default=1_000_000)
    parser.add_argument("--sites", type=int, default=10_000)
    parser.add_argument("--threads", type=int, default=16)
    parser.add_argument("--phases", type=int, default=4)
    parser.add_argument("--tracemalloc", action="store_true", help="measure the agent's memory")
    parser.add_argument(
        "--thread-churn", action="store_true", help="new threads for every phase (a pool per batch)"
    )
    args = parser.parse_args()
    if args.tracemalloc:
        import tracemalloc

        tracemalloc.start(1)
    sites = make_sites(args.sites)
    rss_start = rss_kib()
    per_phase = args.creations // args.phases
    per_thread = per_phase // args.threads
    phases = []
    elapsed = 0.0
    cpu = 0.0
    threads: list[threading.Thread] = []
    go = done = threading.Barrier(1)
    for phase in range(args.phases):
        if args.thread_churn or not threads:
            # long-lived threads run every phase; with --thread-churn each phase gets new ones
            rounds = 1 if args.thread_churn else args.phases
            go = threading.Barrier(args.threads + 1)
            done = threading.Barrier(args.threads + 1)
            threads = [
                threading.Thread(
                    target=worker,
                    args=(sites, (n * args.sites) // args.threads, per_thread, rounds, go, done),
                    name=f"scale-{phase}-{n}",
                )
                for n in range(args.threads)
            ]
            for thread in threads:
                thread.start()
        go.wait()
        t0 = time.perf_counter()
        c0 = time.process_time()
        done.wait()
        took = time.perf_counter() - t0
        cpu += time.process_time() - c0
        elapsed += took
        if args.thread_churn or phase == args.phases - 1:
            for thread in threads:
                thread.join()
        rss, hwm = rss_kib()
        phases.append(
            {
                "phase": phase + 1,
                "creations_so_far": per_thread * args.threads * (phase + 1),
                "seconds": took,
                "rss_kib": rss,
                "hwm_kib": hwm,
                **agent_state(args.tracemalloc),
            }
        )
    creations = per_thread * args.threads * args.phases
    json.dump(
        {
            "creations": creations,
            "sites": args.sites,
            "threads": args.threads,
            "thread_churn": args.thread_churn,
            "seconds": elapsed,
            "ns_per_creation": elapsed / creations * 1e9,
            "cpu_seconds": cpu,
            "cpu_ns_per_creation": cpu / creations * 1e9,
            "rss_start_kib": rss_start[0],
            "phases": phases,
        },
        sys.stdout,
    )
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
