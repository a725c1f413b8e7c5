"""In-process micro-benchmarks (pyperf): what the agent adds per creation and per access.

Run twice by ``run.py``: once plain, once with ``--agent`` (the agent started in each pyperf
worker exactly as sitecustomize starts it, before requests and boto3 are imported). The
``agent.*`` benchmarks time the agent's own pieces and run only with ``--agent``.

    python benchmarks/micro.py [--agent] [pyperf options, e.g. --fast -o out.json]
"""

from __future__ import annotations

import os
import sys
import threading
import time

import pyperf

# CPU time of the benchmarking thread: what the agent adds is CPU work done on that thread
# (hooks, and the weakref callbacks when an object is freed), and thread CPU time is far less
# disturbed than wall time by other processes on a 2-core machine. --wall switches back.
CLOCK = time.thread_time

BOTO_KW = {
    "region_name": "us-east-1",
    "aws_access_key_id": "testing",
    "aws_secret_access_key": "testing",
}


def _start_agent() -> None:
    os.environ.setdefault("LEAKAGENT_LOG_LEVEL", "ERROR")
    os.environ.setdefault("LEAKAGENT_SUMMARY", "never")
    from leakagent.runtime import agent as bootstrap

    if bootstrap.start() is None:
        sys.exit("micro.py --agent: the agent did not start")


def _loop(body, setup=None):  # type: ignore[no-untyped-def]
    """A pyperf time function running ``body(loops)`` (which contains the loop).

    ``setup`` runs once per worker, untimed, before the first timing (imports, warm caches).
    """
    pending = [setup] if setup is not None else []

    def timed(loops: int) -> float:
        while pending:
            pending.pop()()
        t0 = CLOCK()
        body(loops)
        return CLOCK() - t0

    return timed


def local_new(loops: int) -> None:
    local = threading.local  # looked up at call time below, as programs do
    del local
    for _ in range(loops):
        threading.local()


def make_subclass_new():  # type: ignore[no-untyped-def]
    class Ctx(threading.local):  # defined after the agent loaded: counted through __new__
        pass

    def subclass_new(loops: int) -> None:
        for _ in range(loops):
            Ctx()

    return subclass_new


_shared = threading.local()
_shared.value = 1


def local_get(loops: int) -> None:
    shared = _shared
    for _ in range(loops):
        shared.value  # noqa: B018 - the attribute read is what is timed


def local_set(loops: int) -> None:
    shared = _shared
    for _ in range(loops):
        shared.value = 1


def warm_requests() -> None:
    import requests

    requests.Session()


def warm_boto3() -> None:
    import boto3

    boto3.client("s3", **BOTO_KW)


def requests_session(loops: int) -> None:
    import requests

    for _ in range(loops):
        requests.Session()


def boto3_client(loops: int) -> None:
    import boto3

    for _ in range(loops):
        boto3.client("s3", **BOTO_KW)


class _Obj:
    __slots__ = ("__weakref__",)


def alloc_baseline(loops: int) -> None:
    for _ in range(loops):
        _Obj()


def tracker_record(loops: int) -> None:
    from leakagent.core.tracker import Tracker

    tracker = Tracker(threshold=10**12)
    record = tracker.record
    site = ("/app/service.py", 42, "Service.client")
    for _ in range(loops):
        record("bench.Obj", site, _Obj())


def _library_stack(depth: int):  # type: ignore[no-untyped-def]
    """A function that calls ``find`` through ``depth`` frames of a skipped 'library'."""
    from leakagent.hooks.callsite import SiteFinder

    finder = SiteFinder(("/bench/lib/",))
    source = "def level0():\n    return find(0)\n"
    for n in range(1, depth + 1):
        source += f"def level{n}():\n    return level{n - 1}()\n"
    namespace: dict[str, object] = {"find": finder.find}
    exec(compile(source, "/bench/lib/client.py", "exec"), namespace)
    return namespace[f"level{depth}"]


def make_find(depth: int):  # type: ignore[no-untyped-def]
    call = _library_stack(depth)

    def find(loops: int) -> None:
        for _ in range(loops):
            call()

    return find


def make_call_baseline(depth: int):  # type: ignore[no-untyped-def]
    namespace: dict[str, object] = {"find": lambda depth: None}
    source = "def level0():\n    return find(0)\n"
    for n in range(1, depth + 1):
        source += f"def level{n}():\n    return level{n - 1}()\n"
    exec(compile(source, "/bench/lib/client.py", "exec"), namespace)
    call = namespace[f"level{depth}"]

    def calls(loops: int) -> None:
        for _ in range(loops):
            call()  # type: ignore[operator]

    return calls


def _add_args(cmd: list[str], args: object) -> None:
    if getattr(args, "agent", False):
        cmd.append("--agent")
    if getattr(args, "wall", False):
        cmd.append("--wall")
    if getattr(args, "only", None):
        cmd.extend(("--only", args.only))


def main() -> None:
    runner = pyperf.Runner(add_cmdline_args=_add_args)
    runner.argparser.add_argument("--agent", action="store_true", help="start the agent first")
    runner.argparser.add_argument("--only", help="comma-separated indexes of benchmarks to run")
    runner.argparser.add_argument("--wall", action="store_true", help="time wall clock instead")
    args = runner.parse_args()
    if args.wall:
        global CLOCK
        CLOCK = time.perf_counter
    runner.metadata["leakagent_clock"] = "wall" if args.wall else "thread_time"
    if args.agent:
        _start_agent()
    runner.metadata["leakagent_agent"] = str(bool(args.agent))

    benches = [
        ("threading.local()", local_new, None),
        ("Ctx() (threading.local subclass)", make_subclass_new(), None),
        ("local attribute get", local_get, None),
        ("local attribute set", local_set, None),
        ("requests.Session()", requests_session, warm_requests),
        ("boto3.client() warm", boto3_client, warm_boto3),
    ]
    if args.agent:
        benches += [
            ("agent: object allocation (baseline)", alloc_baseline, None),
            ("agent: Tracker.record + allocation", tracker_record, None),
            ("agent: 3 library frames (baseline)", make_call_baseline(3), None),
            ("agent: SiteFinder.find past 3 library frames", make_find(3), None),
        ]
    selected = set(args.only.split(",")) if args.only else None
    for index, (name, body, setup) in enumerate(benches):
        if selected is None or str(index) in selected:
            runner.bench_time_func(name, _loop(body, setup))


if __name__ == "__main__":
    main()
