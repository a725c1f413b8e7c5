"""The table of client constructors the agent counts. Data only: no behaviour lives here.

Each :class:`Target` names where to hook (``module`` and the dotted ``attribute`` inside it),
the label users recognise (``kind``), which package directories are library code to look
past when finding the call site (``packages``), and the oldest library version it is tested
with. A class target wraps ``Class.__init__`` (subclasses that call ``super().__init__`` are
counted too, under their own name); a factory target wraps a function or a method, and counts
the object it returns. A target with ``counts=False`` counts nothing itself: constructions
nested inside it are not counted either (``Elasticsearch.options`` builds a client that shares
its transport: that is not a new client).

``docs/targets.md`` is generated from this table (``python -m leakagent.tools.targetsdoc``).
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Optional


class Target:
    """One constructor to count."""

    __slots__ = (
        "attribute",
        "counts",
        "distribution",
        "enabled",
        "kind",
        "min_version",
        "module",
        "name",
        "note",
        "packages",
    )

    def __init__(
        self,
        name: str,
        module: str,
        attribute: str,
        *,
        kind: Optional[str] = None,
        packages: Optional[tuple[str, ...]] = None,
        distribution: str = "",
        min_version: str = "",
        enabled: bool = True,
        counts: bool = True,
        note: str = "",
    ) -> None:
        self.name = name
        """Unique name, used by ``LEAKAGENT_DISABLED_TARGETS``."""
        self.module = module
        """Module whose import triggers the patch."""
        self.attribute = attribute
        """Dotted path inside ``module``: ``Class.__init__`` or ``factory``."""
        self.kind = kind
        """Label of the instances; None: the instance's own class (``botocore.client.S3``)."""
        top = module.partition(".")[0]
        self.packages = (top,) if packages is None else packages
        """Packages whose frames are library code, skipped to find the call site (a dotted
        name such as ``google.cloud.storage`` for a namespace package; () skips nothing)."""
        self.distribution = distribution or top
        """The distribution (pip name) whose version is tested."""
        self.min_version = min_version
        """Oldest version tested."""
        self.enabled = enabled
        """Patched unless disabled."""
        self.counts = counts
        """False: count nothing here, and nothing constructed inside it."""
        self.note = note
        """What users should know (what the hook misses), shown in ``docs/targets.md``."""

    @property
    def is_class(self) -> bool:
        """True when the target wraps a class constructor."""
        return self.attribute.endswith(".__init__")

    def __repr__(self) -> str:
        return f"Target({self.name!r}, {self.module}:{self.attribute})"


_AWS = ("botocore", "boto3", "aiobotocore")
_NOT_NEW = "not counted: builds a client sharing the original's connection pool"

CATALOG: tuple[Target, ...] = (
    # -- AWS ------------------------------------------------------------------------------
    Target(
        "botocore.client",
        "botocore.session",
        # The choke point of boto3.client, boto3.Session().client and boto3.resource: the
        # endpoint and its urllib3 pools are built here, before BaseClient.__init__ runs.
        "Session.create_client",
        kind=None,  # the generated class: botocore.client.S3, botocore.client.DynamoDB...
        packages=_AWS,
        distribution="botocore",
        min_version="1.43",
        note="boto3.client(), boto3.Session().client(), botocore Session.create_client()",
    ),
    Target(
        "boto3.Session",
        "boto3.session",
        "Session.__init__",
        kind="boto3.Session",
        packages=_AWS,
        min_version="1.43",
        note="boto3.client() counts its default session once",
    ),
    Target(
        "boto3.resource",
        "boto3.session",
        "Session.resource",
        kind=None,  # the generated class: boto3.resources.factory.s3.ServiceResource...
        packages=_AWS,
        min_version="1.43",
        note="boto3.resource(), Session().resource(); its inner client counts once with it",
    ),
    Target(
        "aiobotocore.client",
        "aiobotocore.client",
        "AioBaseClient.__init__",
        kind=None,  # the generated class: aiobotocore.client.S3...
        packages=_AWS,
        min_version="3.10",
        note="AioSession.create_client(); attributed to the `async with` line",
    ),
    # -- HTTP -----------------------------------------------------------------------------
    Target(
        "requests.Session",
        "requests",
        "Session.__init__",
        kind="requests.Session",
        min_version="2.34",
        note="also requests.get() and friends (one session per call, by design)",
    ),
    Target("httpx.Client", "httpx", "Client.__init__", kind="httpx.Client", min_version="0.28"),
    Target(
        "httpx.AsyncClient",
        "httpx",
        "AsyncClient.__init__",
        kind="httpx.AsyncClient",
        min_version="0.28",
    ),
    Target(
        "urllib3.PoolManager",
        "urllib3",
        "PoolManager.__init__",
        kind="urllib3.PoolManager",
        min_version="2.7",
        note="ProxyManager too (under its own name); urllib3.request() shares one pool",
    ),
    Target(
        "aiohttp.ClientSession",
        "aiohttp",
        "ClientSession.__init__",
        kind="aiohttp.ClientSession",
        min_version="3.14",
    ),
    # -- Redis ----------------------------------------------------------------------------
    Target("redis.Redis", "redis", "Redis.__init__", kind="redis.Redis", min_version="8.1"),
    Target(
        "redis.Redis.from_url",
        "redis",
        "Redis.from_url",
        kind="redis.Redis",
        min_version="8.1",
        note="redis.from_url() too; its connection pool counts once with it",
    ),
    Target(
        "redis.ConnectionPool",
        "redis",
        "ConnectionPool.__init__",
        kind="redis.ConnectionPool",
        min_version="8.1",
        note="BlockingConnectionPool under its own name",
    ),
    Target(
        "redis.asyncio.Redis",
        "redis.asyncio",
        "Redis.__init__",
        kind="redis.asyncio.Redis",
        min_version="8.1",
    ),
    Target(
        "redis.asyncio.Redis.from_url",
        "redis.asyncio",
        "Redis.from_url",
        kind="redis.asyncio.Redis",
        min_version="8.1",
    ),
    Target(
        "redis.asyncio.ConnectionPool",
        "redis.asyncio",
        "ConnectionPool.__init__",
        kind="redis.asyncio.ConnectionPool",
        min_version="8.1",
    ),
    # -- MongoDB --------------------------------------------------------------------------
    Target(
        "pymongo.MongoClient",
        "pymongo",
        "MongoClient.__init__",
        kind="pymongo.MongoClient",
        min_version="4.20",
    ),
    Target(
        "pymongo.AsyncMongoClient",
        "pymongo",
        "AsyncMongoClient.__init__",
        kind="pymongo.AsyncMongoClient",
        min_version="4.20",
    ),
    Target(
        "motor.AsyncIOMotorClient",
        "motor.motor_asyncio",
        "AsyncIOMotorClient.__init__",
        kind="motor.AsyncIOMotorClient",
        packages=("motor", "pymongo"),
        min_version="3.7",
        note="its inner pymongo.MongoClient counts once with it",
    ),
    # -- SQL ------------------------------------------------------------------------------
    Target(
        "psycopg2.connect",
        "psycopg2",
        # psycopg2's connection is a C type whose __init__ cannot be patched: the module-level
        # factory is wrapped instead.
        "connect",
        kind=None,  # the connection's class: psycopg2.extensions.connection, or a subclass
        min_version="2.9",
        note="psycopg2-binary too; a `from psycopg2 import connect` run before the agent "
        "loaded, and psycopg2.extensions.connection(dsn) called directly, are missed",
    ),
    Target(
        "psycopg.Connection",
        "psycopg",
        "Connection.__init__",
        kind="psycopg.Connection",
        min_version="3.3",
        note="psycopg.connect(), Connection.connect()",
    ),
    Target(
        "psycopg.AsyncConnection",
        "psycopg",
        "AsyncConnection.__init__",
        kind="psycopg.AsyncConnection",
        min_version="3.3",
    ),
    Target(
        "sqlalchemy.create_engine",
        # Hooked in the module that defines it, before sqlalchemy's own `from .create import
        # create_engine` runs: every binding in the library is the wrapped one. The pool (and
        # SingletonThreadPool's threading.local) is built before Engine.__init__, so the
        # factory, not the class, is the outermost construction.
        "sqlalchemy.engine.create",
        "create_engine",
        kind="sqlalchemy.Engine",
        min_version="2.1",
        note="also engine_from_config() and create_async_engine(); engine.execution_options() "
        "is not new",
    ),
    Target(
        "sqlalchemy.Engine",
        # For a program that bound create_engine before the agent started (the factory patch
        # cannot reach that binding): nested inside create_engine it counts nothing.
        "sqlalchemy.engine.base",
        "Engine.__init__",
        kind="sqlalchemy.Engine",
        min_version="2.1",
        note="engines whose create_engine call was not hooked; subclasses",
    ),
    # -- Search ---------------------------------------------------------------------------
    Target(
        "elasticsearch.Elasticsearch",
        "elasticsearch",
        "Elasticsearch.__init__",
        kind="elasticsearch.Elasticsearch",
        packages=("elasticsearch", "elastic_transport"),
        min_version="9.5",
    ),
    Target(
        "elasticsearch.Elasticsearch.options",
        "elasticsearch",
        "Elasticsearch.options",
        packages=("elasticsearch", "elastic_transport"),
        min_version="9.5",
        counts=False,
        note=_NOT_NEW,
    ),
    Target(
        "elasticsearch.AsyncElasticsearch",
        "elasticsearch",
        "AsyncElasticsearch.__init__",
        kind="elasticsearch.AsyncElasticsearch",
        packages=("elasticsearch", "elastic_transport"),
        min_version="9.5",
    ),
    Target(
        "elasticsearch.AsyncElasticsearch.options",
        "elasticsearch",
        "AsyncElasticsearch.options",
        packages=("elasticsearch", "elastic_transport"),
        min_version="9.5",
        counts=False,
        note=_NOT_NEW,
    ),
    # -- gRPC -----------------------------------------------------------------------------
    Target(
        "grpc.Channel",
        "grpc._channel",
        "Channel.__init__",
        kind="grpc.Channel",
        distribution="grpcio",
        min_version="1.85",
        note="grpc.insecure_channel(), grpc.secure_channel()",
    ),
    Target(
        "grpc.aio.Channel",
        "grpc.aio._channel",
        "Channel.__init__",
        kind="grpc.aio.Channel",
        distribution="grpcio",
        min_version="1.85",
        note="grpc.aio.insecure_channel(), grpc.aio.secure_channel()",
    ),
    # -- Kafka ----------------------------------------------------------------------------
    Target(
        "kafka.KafkaProducer",
        "kafka",
        "KafkaProducer.__init__",
        kind="kafka.KafkaProducer",
        distribution="kafka-python",
        min_version="3.0",
    ),
    Target(
        "kafka.KafkaConsumer",
        "kafka",
        "KafkaConsumer.__init__",
        kind="kafka.KafkaConsumer",
        distribution="kafka-python",
        min_version="3.0",
    ),
    Target(
        "confluent_kafka.Producer",
        "confluent_kafka",
        # A C type: the module attribute is wrapped (calls count; class statements and
        # isinstance still see the real type).
        "Producer",
        kind="confluent_kafka.Producer",
        distribution="confluent-kafka",
        min_version="2.16",
        note="C type: `from confluent_kafka.cimpl import Producer` and subclasses of the C "
        "type are missed",
    ),
    Target(
        "confluent_kafka.Consumer",
        "confluent_kafka",
        "Consumer",
        kind="confluent_kafka.Consumer",
        distribution="confluent-kafka",
        min_version="2.16",
        note="C type: `from confluent_kafka.cimpl import Consumer` and subclasses of the C "
        "type are missed",
    ),
    Target(
        "confluent_kafka.SerializingProducer",
        "confluent_kafka",
        "SerializingProducer.__init__",
        kind="confluent_kafka.SerializingProducer",
        distribution="confluent-kafka",
        min_version="2.16",
    ),
    Target(
        "confluent_kafka.DeserializingConsumer",
        "confluent_kafka",
        "DeserializingConsumer.__init__",
        kind="confluent_kafka.DeserializingConsumer",
        distribution="confluent-kafka",
        min_version="2.16",
    ),
    # -- Cloud SDKs -----------------------------------------------------------------------
    Target(
        "google.cloud.storage.Client",
        "google.cloud.storage.client",
        "Client.__init__",
        kind="google.cloud.storage.Client",
        packages=("google.cloud.storage", "google.cloud.client", "google.auth"),
        distribution="google-cloud-storage",
        min_version="3.17",
    ),
    Target(
        "google.cloud.bigquery.Client",
        "google.cloud.bigquery.client",
        "Client.__init__",
        kind="google.cloud.bigquery.Client",
        packages=("google.cloud.bigquery", "google.cloud.client", "google.auth"),
        distribution="google-cloud-bigquery",
        min_version="3.47",
    ),
    Target(
        "google.auth.AuthorizedSession",
        "google.auth.transport.requests",
        "AuthorizedSession.__init__",
        kind="google.auth.transport.requests.AuthorizedSession",
        packages=("google.auth",),
        distribution="google-auth",
        min_version="2.63",
        note="the HTTP session of google-cloud clients, made on their first request; its "
        "requests.Session counts once with it",
    ),
    Target(
        "azure.storage.blob.BlobServiceClient",
        "azure.storage.blob",
        "BlobServiceClient.__init__",
        kind="azure.storage.blob.BlobServiceClient",
        packages=("azure.storage.blob",),
        distribution="azure-storage-blob",
        min_version="12.31",
        note="also BlobServiceClient.from_connection_string()",
    ),
    Target(
        "azure.storage.blob.aio.BlobServiceClient",
        "azure.storage.blob.aio",
        "BlobServiceClient.__init__",
        kind="azure.storage.blob.aio.BlobServiceClient",
        packages=("azure.storage.blob",),
        distribution="azure-storage-blob",
        min_version="12.31",
    ),
    Target(
        "openai.OpenAI",
        "openai",
        "OpenAI.__init__",
        kind="openai.OpenAI",
        min_version="3.57",
        note="AzureOpenAI under its own name; its inner httpx.Client counts once with it",
    ),
    Target(
        "openai.OpenAI.with_options",
        "openai",
        "OpenAI.with_options",
        min_version="3.57",
        counts=False,
        note=_NOT_NEW,
    ),
    Target(
        "openai.OpenAI.copy",
        "openai",
        "OpenAI.copy",
        min_version="3.57",
        counts=False,
        note=_NOT_NEW,
    ),
    Target(
        "openai.AsyncOpenAI",
        "openai",
        "AsyncOpenAI.__init__",
        kind="openai.AsyncOpenAI",
        min_version="3.57",
    ),
    Target(
        "openai.AsyncOpenAI.with_options",
        "openai",
        "AsyncOpenAI.with_options",
        min_version="3.57",
        counts=False,
        note=_NOT_NEW,
    ),
    Target(
        "openai.AsyncOpenAI.copy",
        "openai",
        "AsyncOpenAI.copy",
        min_version="3.57",
        counts=False,
        note=_NOT_NEW,
    ),
)
