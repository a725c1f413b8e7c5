"""Every catalog entry, against the real library, in real programs.

For each entry a program creates the client once per call (in a thread pool, or per coroutine
on one event-loop thread for async clients), once per thread in a ``threading.local`` made
once, and once for everyone. Only the per-call site may be a suspect, at the right line with
the right kind, and it counts each construction once. The same program is run under the
launcher (the library is imported after the agent) and with the agent started by the program
after it imported the library. A third program patches, unpatches and patches again in both
orders and checks that nothing is ever wrapped twice.

No network: clients are constructed with fake credentials against 127.0.0.1 ports where
nothing listens, and connect lazily. psycopg2 and psycopg connect at construction: they get a
real PostgreSQL server on 127.0.0.1 (:mod:`tests.integration.pgserver`).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import pytest

from leakagent.hooks.catalog import CATALOG
from tests.helpers import clean_env, load_report, run_python_launched, write_script
from tests.integration.pgserver import running_postgres

THRESHOLD = 3
CALLS = 8  # per-call creations: on 2 threads, one of them makes at least 4 > THRESHOLD

AWS = 'region_name="us-east-1", aws_access_key_id="AKIDTEST", aws_secret_access_key="secret"'
AZURE_CONN = (
    "DefaultEndpointsProtocol=https;AccountName=acct;AccountKey=a2V5;"
    "EndpointSuffix=core.windows.net"
)
OFFLINE_ENV = {  # nothing may look for real credentials or reach a metadata service
    "AWS_CONFIG_FILE": "/dev/null",
    "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
    "AWS_EC2_METADATA_DISABLED": "true",
    "NO_PROXY": "*",
    "GOOGLE_CLOUD_PROJECT": "leakagent-test",
}


@dataclass(frozen=True)
class Case:
    """How a program creates (and closes) one client of a catalog entry."""

    target: str
    kind: str
    setup: str
    make: str  # an expression; may ``await`` in async mode
    close: str = "pass"  # one line using ``c``; may ``await`` in async mode
    use: str = "c"  # run on the shared client per call (exercises counts=False targets)
    mode: str = "thread"  # or "async": every creation on the event-loop thread
    shields: tuple[str, ...] = ()  # counts=False entries that `use` goes through
    postgres: bool = False
    label: str = ""
    also: tuple[str, ...] = ()  # other kinds rightly suspect at the same line

    @property
    def id(self) -> str:
        return self.label or self.target


CASES = (
    Case("botocore.client", "botocore.client.S3", "import boto3", f'boto3.client("s3", {AWS})',
         "c.close()"),
    Case("botocore.client", "botocore.client.DynamoDB", "import boto3",
         f'boto3.Session().client("dynamodb", {AWS})', "c.close()", label="botocore.session",
         also=("boto3.Session",)),
    Case("boto3.Session", "boto3.Session", "import boto3", f"boto3.Session({AWS})"),
    Case("boto3.resource", "boto3.resources.factory.s3.ServiceResource", "import boto3",
         f'boto3.resource("s3", {AWS})', "c.meta.client.close()"),
    Case("aiobotocore.client", "aiobotocore.client.S3",
         "import aiobotocore.session\nSESSION = aiobotocore.session.get_session()",
         f'await SESSION.create_client("s3", {AWS}).__aenter__()', "await c.close()",
         mode="async"),
    Case("requests.Session", "requests.Session", "import requests", "requests.Session()",
         "c.close()"),
    Case("httpx.Client", "httpx.Client", "import httpx", "httpx.Client()", "c.close()"),
    Case("httpx.AsyncClient", "httpx.AsyncClient", "import httpx", "httpx.AsyncClient()",
         "await c.aclose()", mode="async"),
    Case("urllib3.PoolManager", "urllib3.PoolManager", "import urllib3", "urllib3.PoolManager()",
         "c.clear()"),
    Case("aiohttp.ClientSession", "aiohttp.ClientSession", "import aiohttp",
         "aiohttp.ClientSession()", "await c.close()", mode="async"),
    Case("redis.Redis", "redis.Redis", "import redis", 'redis.Redis(host="127.0.0.1", port=1)',
         "c.close()"),
    Case("redis.Redis.from_url", "redis.Redis", "import redis",
         'redis.from_url("redis://127.0.0.1:1/0")', "c.close()"),
    Case("redis.ConnectionPool", "redis.ConnectionPool", "import redis",
         'redis.ConnectionPool(host="127.0.0.1", port=1)', "c.disconnect()"),
    Case("redis.asyncio.Redis", "redis.asyncio.Redis", "import redis.asyncio",
         'redis.asyncio.Redis(host="127.0.0.1", port=1)', "await c.aclose()", mode="async"),
    Case("redis.asyncio.Redis.from_url", "redis.asyncio.Redis", "import redis.asyncio",
         'redis.asyncio.from_url("redis://127.0.0.1:1/0")', "await c.aclose()", mode="async"),
    Case("redis.asyncio.ConnectionPool", "redis.asyncio.ConnectionPool", "import redis.asyncio",
         'redis.asyncio.ConnectionPool(host="127.0.0.1", port=1)', "await c.disconnect()",
         mode="async"),
    Case("pymongo.MongoClient", "pymongo.MongoClient", "import pymongo",
         'pymongo.MongoClient("mongodb://127.0.0.1:1", connect=False)', "c.close()"),
    Case("pymongo.AsyncMongoClient", "pymongo.AsyncMongoClient", "import pymongo",
         'pymongo.AsyncMongoClient("mongodb://127.0.0.1:1", connect=False)', "await c.close()",
         mode="async"),
    Case("motor.AsyncIOMotorClient", "motor.AsyncIOMotorClient", "import motor.motor_asyncio",
         'motor.motor_asyncio.AsyncIOMotorClient("mongodb://127.0.0.1:1", connect=False)',
         "c.close()", mode="async"),
    Case("psycopg2.connect", "psycopg2.extensions.connection",
         'import os, psycopg2\nDSN = os.environ["PG_DSN"]', "psycopg2.connect(DSN)", "c.close()",
         postgres=True),
    Case("psycopg.Connection", "psycopg.Connection",
         'import os, psycopg\nDSN = os.environ["PG_DSN"]', "psycopg.connect(DSN)", "c.close()",
         postgres=True),
    Case("psycopg.AsyncConnection", "psycopg.AsyncConnection",
         'import os, psycopg\nDSN = os.environ["PG_DSN"]',
         "await psycopg.AsyncConnection.connect(DSN)", "await c.close()", mode="async",
         postgres=True),
    Case("sqlalchemy.create_engine", "sqlalchemy.Engine",
         'import os, sqlalchemy\nURL = "sqlite:///" + os.path.abspath("db.sqlite")',
         # A file database (QueuePool): with sqlite's in-memory SingletonThreadPool, a program
         # that imported sqlalchemy before the agent started gets the pool's threading.locals
         # counted apart (docs/targets.md, known limits). Not disposed: dispose() builds a
         # new pool.
         'sqlalchemy.create_engine(URL)',
         use="c.execution_options(isolation_level='AUTOCOMMIT')"),
    Case("sqlalchemy.Engine", "sqlalchemy.Engine",
         'import sqlalchemy\nE0 = sqlalchemy.create_engine("sqlite://")',
         "sqlalchemy.engine.Engine(E0.pool, E0.dialect, E0.url)"),
    Case("elasticsearch.Elasticsearch", "elasticsearch.Elasticsearch", "import elasticsearch",
         'elasticsearch.Elasticsearch("http://127.0.0.1:1")', "c.close()",
         use="c.options(request_timeout=5)", shields=("elasticsearch.Elasticsearch.options",)),
    Case("elasticsearch.AsyncElasticsearch", "elasticsearch.AsyncElasticsearch",
         "import elasticsearch", 'elasticsearch.AsyncElasticsearch("http://127.0.0.1:1")',
         "await c.close()", use="c.options(request_timeout=5)", mode="async",
         shields=("elasticsearch.AsyncElasticsearch.options",)),
    Case("grpc.Channel", "grpc.Channel", "import grpc", 'grpc.insecure_channel("127.0.0.1:1")',
         "c.close()"),
    Case("grpc.Channel", "grpc.Channel", "import grpc",
         'grpc.secure_channel("127.0.0.1:1", grpc.ssl_channel_credentials())', "c.close()",
         label="grpc.secure_channel"),
    Case("grpc.aio.Channel", "grpc.aio.Channel", "import grpc.aio",
         'grpc.aio.insecure_channel("127.0.0.1:1")', "await c.close()", mode="async"),
    Case("kafka.KafkaProducer", "kafka.KafkaProducer", "import kafka",
         # an explicit api_version: no broker is asked for it at construction
         'kafka.KafkaProducer(bootstrap_servers="127.0.0.1:1", api_version=(2, 5))',
         "c.close(timeout=0)"),
    Case("kafka.KafkaConsumer", "kafka.KafkaConsumer", "import kafka",
         'kafka.KafkaConsumer(bootstrap_servers="127.0.0.1:1", api_version=(2, 5))',
         "c.close()"),
    Case("confluent_kafka.Producer", "confluent_kafka.Producer", "import confluent_kafka",
         'confluent_kafka.Producer({"bootstrap.servers": "127.0.0.1:1", "log_level": 0})',
         "c.flush(0)"),
    Case("confluent_kafka.Consumer", "confluent_kafka.Consumer", "import confluent_kafka",
         'confluent_kafka.Consumer({"bootstrap.servers": "127.0.0.1:1", "group.id": "g", '
         '"log_level": 0})', "c.close()"),
    Case("confluent_kafka.SerializingProducer", "confluent_kafka.SerializingProducer",
         "import confluent_kafka",
         'confluent_kafka.SerializingProducer({"bootstrap.servers": "127.0.0.1:1", '
         '"log_level": 0})', "c.flush(0)"),
    Case("confluent_kafka.DeserializingConsumer", "confluent_kafka.DeserializingConsumer",
         "import confluent_kafka",
         'confluent_kafka.DeserializingConsumer({"bootstrap.servers": "127.0.0.1:1", '
         '"group.id": "g", "log_level": 0})', "c.close()"),
    Case("google.cloud.storage.Client", "google.cloud.storage.Client",
         "from google.auth.credentials import AnonymousCredentials\n"
         "from google.cloud import storage",
         'storage.Client(project="p", credentials=AnonymousCredentials())'),
    Case("google.cloud.bigquery.Client", "google.cloud.bigquery.Client",
         "from google.auth.credentials import AnonymousCredentials\n"
         "from google.cloud import bigquery",
         'bigquery.Client(project="p", credentials=AnonymousCredentials())'),
    Case("google.auth.AuthorizedSession", "google.auth.transport.requests.AuthorizedSession",
         "from google.auth.credentials import AnonymousCredentials\n"
         "from google.auth.transport.requests import AuthorizedSession",
         "AuthorizedSession(AnonymousCredentials())", "c.close()"),
    Case("azure.storage.blob.BlobServiceClient", "azure.storage.blob.BlobServiceClient",
         "from azure.storage.blob import BlobServiceClient",
         f'BlobServiceClient.from_connection_string("{AZURE_CONN}")', "c.close()"),
    Case("azure.storage.blob.aio.BlobServiceClient", "azure.storage.blob.aio.BlobServiceClient",
         "from azure.storage.blob.aio import BlobServiceClient",
         'BlobServiceClient(account_url="https://acct.blob.core.windows.net", '
         'credential="a2V5")', "await c.close()", mode="async"),
    Case("openai.OpenAI", "openai.OpenAI", "import openai",
         'openai.OpenAI(api_key="sk-test", base_url="http://127.0.0.1:1/v1")', "c.close()",
         use="(c.with_options(timeout=5), c.copy(max_retries=1))",
         shields=("openai.OpenAI.with_options", "openai.OpenAI.copy")),
    Case("openai.AsyncOpenAI", "openai.AsyncOpenAI", "import openai",
         'openai.AsyncOpenAI(api_key="sk-test", base_url="http://127.0.0.1:1/v1")',
         "await c.close()", use="(c.with_options(timeout=5), c.copy(max_retries=1))",
         mode="async",
         shields=("openai.AsyncOpenAI.with_options", "openai.AsyncOpenAI.copy")),
)

THREAD_PROGRAM = """\
{prologue}
import threading
from concurrent.futures import ThreadPoolExecutor

N = {calls}
SHARED = None
_cache = threading.local()


def leaky(i):
    c = {make}  # LEAK
    {close}


def per_thread(i):
    c = getattr(_cache, "client", None)
    if c is None:
        c = _cache.client = {make}  # CACHED
    return c


def shared(i):
    c = SHARED
    return {use}


def main():
    global SHARED
    SHARED = {make}  # SHARED
    with ThreadPoolExecutor(2) as pool:
        list(pool.map(leaky, range(N)))
        cached = list(pool.map(per_thread, range(N)))
        list(pool.map(shared, range(N)))
    for c in {{id(c): c for c in cached}}.values():
        {close}
    c = SHARED
    {close}


main()
"""

ASYNC_PROGRAM = """\
{prologue}
import asyncio

N = {calls}


async def leaky(i):
    c = {make}  # LEAK
    {close}


async def shared(c, i):
    return {use}


async def main():
    c = {make}  # SHARED
    await asyncio.gather(*(leaky(i) for i in range(N)))
    await asyncio.gather(*(shared(c, i) for i in range(N)))
    {close}


asyncio.run(main())
"""

START_AGENT = "import leakagent.runtime.agent\nleakagent.runtime.agent.start()"


def program(case: Case, *, agent_first: bool) -> str:
    """The program of ``case``: the library imported after the agent, or before it."""
    prologue = case.setup if agent_first else f"{case.setup}\n{START_AGENT}"
    template = ASYNC_PROGRAM if case.mode == "async" else THREAD_PROGRAM
    return template.format(
        prologue=prologue, calls=CALLS, make=case.make, close=case.close, use=case.use
    )


def marker_line(source: str, marker: str) -> int:
    for number, line in enumerate(source.splitlines(), 1):
        if line.endswith(f"# {marker}"):
            return number
    raise AssertionError(f"no # {marker} line")


@pytest.fixture(scope="module")
def pg_dsn() -> Iterator[str]:
    with running_postgres() as dsn:
        yield dsn


def run_case(case: Case, tmp_path: Path, request: pytest.FixtureRequest, *, agent_first: bool
             ) -> tuple[str, dict[str, object], subprocess.CompletedProcess[str]]:
    source = program(case, agent_first=agent_first)
    script = write_script(tmp_path, source)
    report_path = tmp_path / "report.json"
    extra = dict(OFFLINE_ENV)
    if case.postgres:
        extra["PG_DSN"] = request.getfixturevalue("pg_dsn")
    if agent_first:
        done = run_python_launched(
            script, cwd=tmp_path, env=clean_env(**extra),
            options=["--threshold", str(THRESHOLD), "--report", str(report_path)],
        )
    else:  # no launcher: the program starts the agent itself, after importing the library
        env = clean_env(LEAKAGENT_THRESHOLD=str(THRESHOLD), LEAKAGENT_REPORT=str(report_path),
                        **extra)
        done = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-4000:]
    return source, load_report(report_path), done


def _here(site: dict[str, object], script: Path, line: int) -> bool:
    return site["file"] == str(script) and site["line"] == line


@pytest.mark.parametrize("agent_first", [True, False], ids=["agent-first", "library-first"])
@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_per_call_client_is_the_only_suspect(
    case: Case, agent_first: bool, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    source, report, done = run_case(case, tmp_path, request, agent_first=agent_first)
    script = tmp_path / "app.py"
    leak, shared = marker_line(source, "LEAK"), marker_line(source, "SHARED")
    suspects = report["suspects"]
    assert isinstance(suspects, list)
    described = [(s["kind"], s["file"], s["line"], s["created"]) for s in suspects]
    expected = sorted((case.kind, *case.also))
    assert sorted(s["kind"] for s in suspects) == expected, (
        f"expected suspects {expected}, got {described}\n{done.stderr[-3000:]}"
    )
    assert all(_here(s, script, leak) for s in suspects), described
    suspect = next(s for s in suspects if s["kind"] == case.kind)
    assert suspect["file"] == str(script)
    assert suspect["function"] == "leaky"
    assert suspect["created"] == CALLS, "each outermost construction counts once"
    if case.mode == "async":  # every coroutine ran on the one event-loop thread
        assert (suspect["threads"], suspect["max_thread"]) == (1, "MainThread")
    sites = report["sites"]
    assert isinstance(sites, list)
    at_shared = [s for s in sites if _here(s, script, shared) and s["kind"] == case.kind]
    assert [s["created"] for s in at_shared] == [1]
    if case.mode == "thread":
        cached = [s for s in sites if _here(s, script, marker_line(source, "CACHED"))
                  and s["kind"] == case.kind]
        assert [s["kind"] for s in cached] == [case.kind]
        assert cached[0]["created"] <= 2 and cached[0]["max_per_thread"] == 1
    # nothing else of this kind was counted anywhere (nested constructions count once)
    others = [s for s in sites if s["kind"] == case.kind and s["file"] != str(script)]
    assert not others, others


WRAP_PROGRAM = """\
import importlib, json, sys
from leakagent.hooks import importhook, patcher
from leakagent.hooks.catalog import CATALOG
from leakagent.core.tracker import Tracker

target = {{t.name: t for t in CATALOG}}[{name!r}]
tracker = Tracker(threshold=1000)
parent_path, _, attribute = target.attribute.rpartition(".")
events = []


def parent():
    obj = sys.modules[target.module]
    for part in filter(None, parent_path.split(".")):
        obj = getattr(obj, part)
    return obj


def stored():
    return vars(parent()).get(attribute, "<absent>")


def state():
    value = stored()
    if patcher.is_ours(value):
        inner = value.__wrapped__
        return "wrapped-twice" if patcher.is_ours(inner) else "wrapped"
    return "pristine" if value is pristine else "changed"


def hook(module):
    global pristine
    if "pristine" not in globals():
        pristine = stored()
    events.append(("hook", patcher.patch(target, module, tracker), state()))


assert target.module not in sys.modules
importhook.when_imported(target.module, hook)             # 1. hook first, then the import
module = importlib.import_module(target.module)
events.append(("patch-again", patcher.patch(target, module, tracker), state()))
importhook.when_imported(target.module, hook)             # 2. hook after the import: at once
events.append(("unpatch", patcher.unpatch(target.name), state()))
events.append(("unpatch-again", patcher.unpatch(target.name), state()))
importhook.when_imported(target.module, hook)             # 3. patch again after unpatch
events.append(("patch-again", patcher.patch(target, module, tracker), state()))
events.append(("unpatch-all", patcher.unpatch_all() == [target.name], state()))
events.append(("patch", patcher.patch(target, module, tracker), state()))
events.append(("unpatch", patcher.unpatch(target.name), state()))
print(json.dumps(events))
"""

EXPECTED_WRAP_EVENTS = [
    ["hook", True, "wrapped"],
    ["patch-again", False, "wrapped"],
    ["hook", False, "wrapped"],
    ["unpatch", True, "pristine"],
    ["unpatch-again", False, "pristine"],
    ["hook", True, "wrapped"],
    ["patch-again", False, "wrapped"],
    ["unpatch-all", True, "pristine"],
    ["patch", True, "wrapped"],
    ["unpatch", True, "pristine"],
]


@pytest.mark.parametrize("name", [t.name for t in CATALOG])
def test_never_wrapped_twice(name: str, tmp_path: Path) -> None:
    script = write_script(tmp_path, WRAP_PROGRAM.format(name=name), "wrap.py")
    done = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=clean_env(**OFFLINE_ENV),
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-4000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == EXPECTED_WRAP_EVENTS


def test_every_catalog_entry_has_a_program() -> None:
    covered = {c.target for c in CASES} | {s for c in CASES for s in c.shields}
    counting = {t.name for t in CATALOG if t.counts}
    shields = {t.name for t in CATALOG if not t.counts}
    assert counting | shields == covered, "catalog entries without a test program"
    assert all(c.target in counting for c in CASES)


def _version_tuple(text: str) -> tuple[int, ...]:
    return tuple(int(n) for n in re.findall(r"\d+", text)[:2])


@pytest.mark.parametrize("target", CATALOG, ids=[t.name for t in CATALOG])
def test_installed_library_is_at_least_the_documented_version(target: object) -> None:
    from leakagent.hooks.catalog import Target

    assert isinstance(target, Target)
    installed = None
    for distribution in (target.distribution, f"{target.distribution}-binary"):
        try:
            installed = version(distribution)
            break
        except PackageNotFoundError:
            continue
    assert installed is not None, f"{target.distribution} is not installed: add it to [test]"
    assert _version_tuple(installed) >= _version_tuple(target.min_version), (
        f"{target.distribution} {installed} is older than the documented {target.min_version}"
    )


def test_program_template_is_valid_python() -> None:
    for case in CASES:
        for agent_first in (True, False):
            compile(program(case, agent_first=agent_first), case.id, "exec")
    compile(textwrap.dedent(WRAP_PROGRAM.format(name="x")), "wrap", "exec")


def test_program_subclass_is_reported_under_its_own_name_where_it_is_created(
    tmp_path: Path,
) -> None:
    script = write_script(
        tmp_path,
        """\
        import requests
        from concurrent.futures import ThreadPoolExecutor


        class RetryingSession(requests.Session):
            def __init__(self):
                super().__init__()
                self.max_retries = 3


        def per_call(i):
            RetryingSession().close()  # HERE

        with ThreadPoolExecutor(2) as pool:
            list(pool.map(per_call, range(8)))
        """,
    )
    report_path = tmp_path / "report.json"
    done = run_python_launched(
        script, cwd=tmp_path,
        options=["--threshold", str(THRESHOLD), "--report", str(report_path)],
    )
    assert done.returncode == 0, done.stderr
    suspects = load_report(report_path)["suspects"]
    assert [(s["kind"], s["base"], s["line"], s["created"]) for s in suspects] == [
        ("__main__.RetryingSession", "requests.Session", 12, 8)
    ]
