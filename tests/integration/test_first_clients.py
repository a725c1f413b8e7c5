"""The first set of client targets, real libraries, real launcher."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import clean_env, load_report, run_python_launched, write_script

PER_CALL = """
import threading
from concurrent.futures import ThreadPoolExecutor
{imports}

def make():
    return {construct}  # CREATE

def task(n):
    obj = make()
    {close}
    return n

with ThreadPoolExecutor(4) as pool:
    list(pool.map(task, range(200)))
print("done")
"""

PER_THREAD = """
import threading
from concurrent.futures import ThreadPoolExecutor
{imports}

cache = threading.local()

def get():
    obj = getattr(cache, "obj", None)
    if obj is None:
        obj = cache.obj = {construct}  # CREATE
    return obj

def task(n):
    get()
    return n

with ThreadPoolExecutor(32) as pool:
    list(pool.map(task, range(2000)))
print("done")
"""

CLIENTS = {
    "requests.Session": ("import requests", "requests.Session()", "obj.close()"),
    "httpx.Client": ("import httpx", "httpx.Client()", "obj.close()"),
    "httpx.AsyncClient": ("import httpx", "httpx.AsyncClient()", "pass"),
    "urllib3.PoolManager": ("import urllib3", "urllib3.PoolManager()", "obj.clear()"),
    "redis.Redis": (
        "import redis",
        "redis.Redis(host='127.0.0.1', port=1, password='s3cr3t-canary')",
        "obj.close()",
    ),
    "botocore.client.S3": (
        "import boto3",
        "boto3.client('s3', region_name='us-east-1', aws_access_key_id='AKIDCANARY',"
        " aws_secret_access_key='canary-secret')",
        "pass",
    ),
}


def create_line(script: Path) -> int:
    return next(n for n, t in enumerate(script.read_text().splitlines(), 1) if "# CREATE" in t)


@pytest.mark.parametrize("kind", sorted(CLIENTS))
def test_client_per_call_is_a_suspect_at_the_users_line(kind: str, tmp_path: Path) -> None:
    imports, construct, close = CLIENTS[kind]
    script = write_script(tmp_path, PER_CALL.format(imports=imports, construct=construct,
                                                    close=close))
    report_path = tmp_path / "r.json"
    result = run_python_launched(script, options=["--threshold", "20", "--report",
                                                  str(report_path)])
    assert result.returncode == 0, result.stderr
    assert result.stdout == "done\n"
    report = load_report(report_path)
    suspects = [s for s in report["suspects"] if s["kind"] == kind]
    assert len(suspects) == 1, report["suspects"]
    site = suspects[0]
    assert site["file"] == str(script) and site["line"] == create_line(script)
    assert site["function"] == "make" and site["created"] == 200
    # nested constructions (a Session's urllib3 pools, boto3's endpoint) count once
    assert {s["kind"] for s in report["suspects"]} == {kind}
    # 20 beyond one per thread alive at a time (4 pool threads): flagged by the 24th at most
    assert f"leakagent: {kind} created " in result.stderr
    assert site["flagged_after"]["created"] <= 20 + site["concurrency"]
    for secret in ("s3cr3t-canary", "AKIDCANARY", "canary-secret"):
        assert secret not in result.stderr and secret not in report_path.read_text()


@pytest.mark.parametrize("kind", sorted(CLIENTS))
def test_client_cached_per_thread_is_not_a_suspect(kind: str, tmp_path: Path) -> None:
    imports, construct, _ = CLIENTS[kind]
    script = write_script(tmp_path, PER_THREAD.format(imports=imports, construct=construct))
    report_path = tmp_path / "r.json"
    result = run_python_launched(script, options=["--threshold", "1", "--report",
                                                  str(report_path)])
    assert result.returncode == 0, result.stderr
    report = load_report(report_path)
    assert report["suspects"] == [], report["suspects"]
    (site,) = [s for s in report["sites"] if s["kind"] == kind]
    assert site["max_per_thread"] == 1 and 1 <= site["threads"] <= 32


def test_program_subclass_is_reported_under_its_own_name(tmp_path: Path) -> None:
    script = write_script(tmp_path, """
        import requests
        class ApiSession(requests.Session):
            def __init__(self):
                super().__init__()
                self.headers["X-App"] = "1"
        for _ in range(30):
            ApiSession().close()  # CREATE
    """)
    report_path = tmp_path / "r.json"
    run_python_launched(script, options=["--threshold", "10", "--report", str(report_path)])
    (site,) = load_report(report_path)["suspects"]
    assert site["kind"] == "__main__.ApiSession" and site["base"] == "requests.Session"
    assert site["line"] == create_line(script) and site["created"] == 30


def test_library_imported_before_the_agent_starts_is_patched(tmp_path: Path) -> None:
    script = write_script(tmp_path, """
        import requests, threading
        import leakagent.runtime.agent
        agent = leakagent.runtime.agent.start()
        for _ in range(30):
            requests.Session()
        sites = agent.tracker.snapshot()
        print([(s["kind"], s["created"]) for s in sites if s["kind"] == "requests.Session"])
    """)
    import subprocess

    result = subprocess.run([sys.executable, str(script)], env=clean_env(),
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "[('requests.Session', 30)]\n"


def test_patch_unpatch_patch_wraps_once(tmp_path: Path) -> None:
    script = write_script(tmp_path, """
        import requests, wrapt
        from leakagent.hooks import patcher
        from leakagent.hooks.catalog import CATALOG
        from leakagent.core.tracker import Tracker
        target = next(t for t in CATALOG if t.name == "requests.Session")
        patcher.unpatch_all()  # under the launcher the agent patched it already
        original = requests.Session.__dict__["__init__"]
        tracker = Tracker(threshold=1000)
        assert patcher.patch(target, requests, tracker)
        assert not patcher.patch(target, requests, tracker)  # already
        wrapped = requests.Session.__dict__["__init__"]
        assert wrapped is not original and wrapped.__wrapped__ is original
        assert wrapped.__qualname__ == original.__qualname__
        assert patcher.unpatch("requests.Session")
        assert requests.Session.__dict__["__init__"] is original
        assert not patcher.unpatch("requests.Session")
        assert patcher.patch(target, requests, tracker)
        requests.Session()
        print(tracker.totals()["created"])
    """)
    for runner in (
        lambda: subprocess.run([sys.executable, str(script)], env=clean_env(),
                               capture_output=True, text=True, timeout=60),
        lambda: run_python_launched(script),  # the agent's own patch is there first
    ):
        result = runner()
        assert result.returncode == 0, result.stderr
        assert result.stdout == "1\n"


WRAPT_LATER = """
    import inspect, sys, threading
    import requests
    requests.Session()
    print("imported by the agent:", sorted(m for m in ("wrapt", "asyncio") if m in sys.modules))
    import redis  # imports asyncio itself
    import wrapt
    import wrapt.exceptions
    print(wrapt.exceptions.WrapperNotInitializedError.__name__ if hasattr(wrapt.exceptions,
          "WrapperNotInitializedError") else "WrapperNotInitializedError")
    ours = vars(redis.Redis)["from_url"]  # a factory: wrapped by wrapt
    print("same types:", isinstance(ours, wrapt.FunctionWrapper))
    print("signature:", list(inspect.signature(requests.Session.__init__).parameters))
    calls = []
    def outer(wrapped, instance, args, kwargs):  # another instrumentation wraps ours
        calls.append(1)
        return wrapped(*args, **kwargs)
    wrapt.wrap_function_wrapper(requests.Session, "__init__", outer)
    @wrapt.decorator
    def passthrough(wrapped, instance, args, kwargs):
        return wrapped(*args, **kwargs)
    for _ in range(11):
        requests.Session()
    print("outer calls:", len(calls), passthrough(len)("abc"))
"""


@pytest.mark.parametrize("extensions", ["C", "pure-Python"])
def test_the_agent_loads_only_wrapts_wrappers(tmp_path: Path, extensions: str) -> None:
    """`import wrapt` (2.2+) imports asyncio, whose objects every full GC then walks; the agent
    loads wrapt's C wrappers alone, and a later `import wrapt` by the program gets the same
    types (other instrumentation's isinstance checks and re-wrapping still work)."""
    script = write_script(tmp_path, WRAPT_LATER)
    env = clean_env(WRAPT_DISABLE_EXTENSIONS="1") if extensions != "C" else clean_env()
    result = run_python_launched(script, env=env,
                                 options=["--report", str(tmp_path / "r.json")])
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    if extensions == "C":
        assert lines[0] == "imported by the agent: []"
    else:  # wrapt's pure-Python wrappers come with the package
        assert lines[0].startswith("imported by the agent: ['asyncio', 'wrapt']") or \
            lines[0] == "imported by the agent: ['wrapt']"
    assert lines[1:] == ["WrapperNotInitializedError", "same types: True",
                         "signature: ['self']", "outer calls: 11 3"]
    sites = [s for s in load_report(tmp_path / "r.json")["sites"]
             if s["kind"] == "requests.Session"]
    assert sum(s["created"] for s in sites) == 12


CALLED_BY_HAND = """
    import requests, redis
    session = requests.Session.__new__(requests.Session)
    requests.Session.__init__(self=session)  # self as a keyword
    print(type(session.adapters).__name__)
    class Mine(redis.Redis):
        def __init__(self, **kw):
            super().__init__(host="127.0.0.1", port=1, **kw)
    print(Mine(db=3).connection_pool.connection_kwargs["db"])
    for call in (lambda: requests.Session.__init__(), lambda: redis.Redis(nohost=1)):
        try:
            call()
        except TypeError as exc:
            print(type(exc).__name__, str(exc).split("(")[-1][:40])
"""


def test_a_class_targets_init_takes_what_the_original_takes(tmp_path: Path) -> None:
    # the replacement has no named parameter: keywords (self= included) reach the original
    script = write_script(tmp_path, CALLED_BY_HAND)
    plain = subprocess.run([sys.executable, str(script)], env=clean_env(),
                           capture_output=True, text=True, timeout=60)
    agent = run_python_launched(script, options=["--report", str(tmp_path / "r.json")])
    assert plain.returncode == agent.returncode == 0, agent.stderr
    assert agent.stdout == plain.stdout and plain.stdout.startswith("OrderedDict\n3\nTypeError")
    sites = load_report(tmp_path / "r.json")["sites"]
    counted = {(s["kind"], s["base"]): s["created"] for s in sites if s["origin"] == "user"}
    assert counted[("requests.Session", None)] == 1  # the instance from self=
    assert counted[("__main__.Mine", "redis.Redis")] == 1


NESTED = """
    import collections, sys
    import redis
    from leakagent.hooks import patcher
    calls = collections.Counter()
    def profile(frame, event, arg):
        if event == "call" and frame.f_code.co_filename == patcher.__file__:
            calls[frame.f_code.co_name] += 1
    sys.setprofile(profile)
    client = redis.Redis(host="127.0.0.1", port=1)
    sys.setprofile(None)
    print(sorted(calls.items()), client.connection_pool.connection_kwargs["port"])
"""


def test_a_nested_construction_goes_straight_to_the_original(tmp_path: Path) -> None:
    # redis.Redis() builds its ConnectionPool (a target too) with ~30 keywords: the pool's
    # __init__ is looked up through the hook's __get__, which hands out the original bound:
    # the keywords never pass through the agent's counting function, which runs once (Redis,
    # bound by __get__ as ``outermost``; the class attribute's ``__init__`` is not called)
    script = write_script(tmp_path, NESTED)
    result = run_python_launched(script, options=["--report", str(tmp_path / "r.json")])
    assert result.returncode == 0, result.stderr
    calls = dict(ast.literal_eval(result.stdout.rsplit(" ", 1)[0]))
    assert result.stdout.endswith(" 1\n")
    assert calls.get("__get__") == 2 and calls.get("outermost") == 1, calls
    assert "__init__" not in calls and "construct" not in calls, calls
    sites = load_report(tmp_path / "r.json")["sites"]
    counted = {s["kind"]: s["created"] for s in sites if s["origin"] == "user"}
    assert counted == {"redis.Redis": 1}, counted  # the pool counts with its client


FAST_PATH = """
    import json, threading, requests
    import leakagent.runtime.agent as bootstrap
    THREADS, EACH = 16, 1200
    kept = []
    class Mine(requests.Session):
        pass
    barrier = threading.Barrier(THREADS)
    def work():
        barrier.wait()
        for i in range(EACH):
            requests.Session()  # churn at one line: counted in the thread's cell
            if i % 3 == 0:
                kept.append(requests.Session())  # retention at a line of its own
            Mine()  # a program subclass at the same loop: its own kind
    threads = [threading.Thread(target=work) for _ in range(THREADS)]
    for t in threads: t.start()
    for t in threads: t.join()
    import collections, sys
    calls = collections.Counter()
    def profile(frame, event, arg):
        if event == "call" and "leakagent" in frame.f_code.co_filename:
            calls[frame.f_code.co_name] += 1
    sys.setprofile(profile)
    for _ in range(30):
        requests.Session()
    sys.setprofile(None)
    sites = bootstrap.get_agent().tracker.snapshot()
    print(json.dumps(sorted(
        [s["kind"], s["line"], s["created"], s["verdict"], s["max_per_thread"]]
        for s in sites if s["origin"] == "user" and s["line"] < 20)))
    print(calls["outermost"], calls["_count"], calls["record"], calls["record_cell"])
"""


def test_client_fast_path_keeps_exact_counts_on_16_threads(tmp_path: Path) -> None:
    # From a thread's second construction at a line, a class target's counted __init__ counts
    # in the thread's cell without the site search or Tracker.record (the threading.local
    # fast path); counts stay exact, verdicts and a subclass's own kind unchanged
    script = write_script(tmp_path, FAST_PATH)
    result = run_python_launched(script, timeout=300)
    assert result.returncode == 0, result.stderr
    counts, calls = result.stdout.splitlines()
    rows = {(kind, line): (created, verdict, most)
            for kind, line, created, verdict, most in json.loads(counts)}
    assert rows == {
        ("requests.Session", 12): (16 * 1200, "churn", 1200),
        ("requests.Session", 14): (16 * 400, "retention", 400),
        ("__main__.Mine", 15): (16 * 1200, "churn", 1200),
    }, rows
    # 30 at a new line on the main thread: the site search and record for the first two
    # only (record hands the second to record_cell), then the thread's cell straight to
    # record_cell for the other 28 (no verdict yet: every one is watched)
    assert calls.split() == ["30", "2", "2", "29"], calls
