"""The catalog table, its generated documentation, and the parsing of user targets."""

from __future__ import annotations

import ast
import sys
import types
from pathlib import Path

import pytest

from leakagent.core import config, targetspec
from leakagent.hooks import catalog as targets
from leakagent.hooks import usertargets
from leakagent.hooks.catalog import CATALOG, Target
from leakagent.tools import cli, targetsdoc

ROOT = Path(__file__).resolve().parents[3]


def test_docs_targets_md_is_generated_from_the_catalog() -> None:
    on_disk = (ROOT / "docs" / "targets.md").read_text()
    assert on_disk == targetsdoc.render(), (
        "docs/targets.md is stale: run python -m leakagent.tools.targetsdoc > docs/targets.md"
    )


def test_docs_list_every_entry() -> None:
    text = targetsdoc.render()
    for target in CATALOG:
        assert f"| `{target.name}` | `{target.module}:{target.attribute}` |" in text


def test_catalog_names_are_unique_and_complete() -> None:
    names = [t.name for t in CATALOG]
    assert len(names) == len(set(names))
    for target in CATALOG:
        assert target.min_version, target
        assert target.distribution, target
        assert target.packages, target
        assert all(p.replace(".", "").replace("_", "").isalnum() for p in target.packages)
        if not target.counts:
            assert target.kind is None and not target.is_class
        assert target.enabled


def test_catalog_covers_the_issue_list() -> None:
    names = {t.name for t in CATALOG}
    wanted = {
        "botocore.client", "boto3.Session", "boto3.resource", "aiobotocore.client",
        "requests.Session", "httpx.Client", "httpx.AsyncClient", "urllib3.PoolManager",
        "aiohttp.ClientSession", "redis.Redis", "redis.asyncio.Redis", "redis.ConnectionPool",
        "pymongo.MongoClient", "motor.AsyncIOMotorClient", "psycopg2.connect",
        "psycopg.Connection", "sqlalchemy.create_engine", "elasticsearch.Elasticsearch",
        "grpc.Channel", "kafka.KafkaProducer", "kafka.KafkaConsumer",
        "confluent_kafka.Producer", "confluent_kafka.Consumer", "google.cloud.storage.Client",
        "google.cloud.bigquery.Client", "azure.storage.blob.BlobServiceClient", "openai.OpenAI",
    }
    assert wanted <= names, wanted - names


def test_targets_module_is_data_only() -> None:
    tree = ast.parse(Path(targets.__file__).read_text())
    for node in tree.body:
        if isinstance(node, ast.ImportFrom):
            assert node.module == "__future__"
        elif isinstance(node, ast.Import):
            raise AssertionError("catalog.py imports nothing")
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            raise AssertionError(f"catalog.py holds no functions: {node.name}")
        elif isinstance(node, ast.If):  # TYPE_CHECKING only
            assert isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"


def test_target_defaults() -> None:
    target = Target("x", "pkg.sub.mod", "Client.__init__")
    assert target.packages == ("pkg",) and target.distribution == "pkg"
    assert target.is_class and target.counts
    assert Target("y", "pkg.mod", "make", packages=()).packages == ()


# -- specs -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "module", "attribute"),
    [
        ("pkg.clients:ApiClient", "pkg.clients", "ApiClient"),
        (" pkg : make_client ", "pkg", "make_client"),
        ("pkg.mod:Outer.Client", "pkg.mod", "Outer.Client"),
        ("pkg:Client.__init__", "pkg", "Client.__init__"),
    ],
)
def test_parse_spec(text: str, module: str, attribute: str) -> None:
    spec = targetspec.parse_spec(text)
    assert (spec.module, spec.attribute) == (module, attribute)
    assert spec.text == f"{module}:{attribute}"


@pytest.mark.parametrize(
    "text", ["pkg.Client", "pkg:", ":Client", "pkg:Cli ent", "1pkg:Client", "pkg:a:b", "pkg..x:A"]
)
def test_parse_spec_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="module:attribute"):
        targetspec.parse_spec(text)


def test_parse_specs_names_each_malformed_entry() -> None:
    specs, problems = targetspec.parse_specs("a.b:C, nocolon ,,a.b:C, d:e.f, x:1y")
    assert [s.text for s in specs] == ["a.b:C", "d:e.f"]
    assert len(problems) == 2
    assert "'nocolon'" in problems[0] and "LEAKAGENT_TARGETS" in problems[0]
    assert "'x:1y'" in problems[1]


def test_parse_disabled() -> None:
    assert usertargets.check_disabled(()) == ((), [])
    assert usertargets.check_disabled(targetspec.split_names("requests.Session, *")) == (("*",), [])
    names, problems = usertargets.check_disabled(targetspec.split_names("requests.Session,reqests.Session"))
    assert names == ("requests.Session",)
    assert len(problems) == 1 and "'reqests.Session'" in problems[0]


def test_select() -> None:
    assert usertargets.select(CATALOG, ("*",)) == []
    chosen = usertargets.select(CATALOG, ("requests.Session",))
    assert [t.name for t in chosen] == [t.name for t in CATALOG if t.name != "requests.Session"]


def _module(name: str, file: str) -> types.ModuleType:
    module = types.ModuleType(name)
    module.__file__ = file

    class Client:
        pass

    Outer = type("Outer", (), {"Client": Client})

    def make() -> Client:
        return Client()

    module.Client = Client  # type: ignore[attr-defined]
    module.Outer = Outer  # type: ignore[attr-defined]
    module.make = make  # type: ignore[attr-defined]
    module.CType = dict  # type: ignore[attr-defined]
    module.value = 3  # type: ignore[attr-defined]
    return module


def test_target_for_class_factory_and_c_type(monkeypatch: pytest.MonkeyPatch) -> None:
    module = _module("myapp.clients", "/srv/app/myapp/clients.py")
    monkeypatch.setitem(sys.modules, "myapp", _module("myapp", "/srv/app/myapp/__init__.py"))
    monkeypatch.setitem(sys.modules, "myapp.clients", module)

    def target(attribute: str) -> Target:
        return usertargets.target_for(targetspec.parse_spec(f"myapp.clients:{attribute}"), module)

    cls = target("Client")
    assert (cls.attribute, cls.kind, cls.is_class) == (
        "Client.__init__", "myapp.clients.Client", True
    )
    assert cls.name == "myapp.clients:Client"
    assert cls.packages == ()  # the program's own code: its direct caller is the site
    nested = target("Outer.Client")
    assert (nested.attribute, nested.kind) == (
        "Outer.Client.__init__", "myapp.clients.Outer.Client"
    )
    factory = target("make")
    assert (factory.attribute, factory.kind, factory.is_class) == ("make", None, False)
    c_type = target("CType")  # __init__ of a C type cannot be patched: wrap the name
    assert (c_type.attribute, c_type.kind, c_type.is_class) == (
        "CType", "myapp.clients.CType", False
    )
    with pytest.raises(LookupError, match="no attribute 'Nope'"):
        target("Nope")
    with pytest.raises(LookupError, match="neither a class nor a function"):
        target("value")


def test_target_for_a_library_skips_no_package(monkeypatch: pytest.MonkeyPatch) -> None:
    # an installed program (under site-packages) must keep its own call sites
    lib = _module("vendorlib", "/usr/lib/python3/site-packages/vendorlib/__init__.py")
    monkeypatch.setitem(sys.modules, "vendorlib", lib)
    target = usertargets.target_for(targetspec.parse_spec("vendorlib:Client"), lib)
    assert target.packages == ()


def test_never_imported_problem() -> None:
    assert usertargets.never_imported_problem(targetspec.parse_spec("os:getcwd")) is None
    assert usertargets.never_imported_problem(targetspec.parse_spec("xml.dom.minidom:X")) is None
    problem = usertargets.never_imported_problem(
        targetspec.parse_spec("no_such_package_leakagent:Client")
    )
    assert problem is not None and "'no_such_package_leakagent:Client'" in problem


def test_track_without_an_agent_returns_false() -> None:
    import leakagent

    assert leakagent.track("json:JSONDecoder") is False
    with pytest.raises(ValueError):
        leakagent.track("json.JSONDecoder")


# -- configuration and launcher ----------------------------------------------------------


def test_config_reads_targets_and_disabled_targets() -> None:
    loaded = config.load(
        {
            "LEAKAGENT_TARGETS": "a.b:C,broken,d:f",
            "LEAKAGENT_DISABLED_TARGETS": "requests.Session,nonsense",
        }
    )
    assert loaded.targets == ("a.b:C", "d:f")
    assert loaded.disabled_targets == ("requests.Session", "nonsense")
    assert any("'broken'" in p for p in loaded.problems)
    # names are checked against the catalog by the hooks layer, which the agent asks at start
    known, problems = usertargets.check_disabled(loaded.disabled_targets)
    assert known == ("requests.Session",)
    assert any("'nonsense'" in p for p in problems)
    defaults = config.load({})
    assert (defaults.targets, defaults.disabled_targets, defaults.problems) == ((), (), ())


def test_settings_document_the_new_variables() -> None:
    documented = {s.env for s in config.SETTINGS}
    assert {"LEAKAGENT_TARGETS", "LEAKAGENT_DISABLED_TARGETS"} <= documented


def test_launcher_target_options_add_to_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEAKAGENT_TARGETS", "a:B")
    monkeypatch.delenv("LEAKAGENT_DISABLED_TARGETS", raising=False)
    options = cli._parser().parse_args(
        ["--target", "c.d:E", "--target", "f:g", "--disable-target", "redis.Redis", "python"]
    )
    env = cli._environment(options, "/x")
    assert env["LEAKAGENT_TARGETS"] == "a:B,c.d:E,f:g"
    assert env["LEAKAGENT_DISABLED_TARGETS"] == "redis.Redis"
