"""The table of client constructors the agent counts. Data only: no behaviour lives here.

Each :class:`Target` names where to hook (``module`` and the dotted ``attribute`` inside it),
the label users recognise (``kind``), which package directories are library code to look
past when finding the call site (``packages``), and the oldest library version it is tested
with. A class target wraps ``Class.__init__`` (subclasses that call ``super().__init__`` are
counted too, under their own name); a factory target wraps a module-level function.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Optional


class Target:
    """One constructor to count."""

    __slots__ = (
        "attribute",
        "distribution",
        "enabled",
        "kind",
        "min_version",
        "module",
        "name",
        "packages",
    )

    def __init__(
        self,
        name: str,
        module: str,
        attribute: str,
        *,
        kind: Optional[str] = None,
        packages: tuple[str, ...] = (),
        distribution: str = "",
        min_version: str = "",
        enabled: bool = True,
    ) -> None:
        self.name = name
        """Unique name, used by ``LEAKAGENT_DISABLED_TARGETS``."""
        self.module = module
        """Module whose import triggers the patch."""
        self.attribute = attribute
        """Dotted path inside ``module``: ``Class.__init__`` or ``factory``."""
        self.kind = kind
        """Label of the instances; None: the instance's own class (``botocore.client.S3``)."""
        self.packages = packages or (module.partition(".")[0],)
        """Top-level packages whose frames are library code, skipped to find the call site."""
        self.distribution = distribution or self.packages[0]
        """The distribution (pip name) whose version is checked."""
        self.min_version = min_version
        """Oldest version tested."""
        self.enabled = enabled
        """Patched unless disabled."""

    @property
    def is_class(self) -> bool:
        """True when the target wraps a class constructor."""
        return self.attribute.endswith(".__init__")

    def __repr__(self) -> str:
        return f"Target({self.name!r}, {self.module}:{self.attribute})"


CATALOG: tuple[Target, ...] = (
    Target(
        "botocore.client",
        "botocore.session",
        # The choke point of boto3.client, boto3.Session().client and boto3.resource: the
        # endpoint and its urllib3 pools are built here, before BaseClient.__init__ runs.
        "Session.create_client",
        kind=None,  # the generated class: botocore.client.S3, botocore.client.DynamoDB...
        packages=("botocore", "boto3"),
        distribution="botocore",
        min_version="1.29",
    ),
    Target(
        "requests.Session",
        "requests",
        "Session.__init__",
        kind="requests.Session",
        min_version="2.28",
    ),
    Target("httpx.Client", "httpx", "Client.__init__", kind="httpx.Client", min_version="0.24"),
    Target(
        "httpx.AsyncClient",
        "httpx",
        "AsyncClient.__init__",
        kind="httpx.AsyncClient",
        min_version="0.24",
    ),
    Target(
        "urllib3.PoolManager",
        "urllib3",
        "PoolManager.__init__",
        kind="urllib3.PoolManager",
        min_version="1.26",
    ),
    Target("redis.Redis", "redis", "Redis.__init__", kind="redis.Redis", min_version="4.5"),
)
