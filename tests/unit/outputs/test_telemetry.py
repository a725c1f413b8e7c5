"""The export layer's pure parts: the plan read from OTEL_* variables, the bounds (series per
call site, span rate), memory and cgroup limits, the launcher flags. No OpenTelemetry here."""

from __future__ import annotations

import sys

import pytest
from leakagent.outputs.telemetry.limits import OVERFLOW, SeriesMap, SpanLimiter

from leakagent.core import config
from leakagent.outputs.telemetry import plan_from_env
from leakagent.tools import cli


def test_nothing_configured_means_no_export() -> None:
    plan = plan_from_env({})
    assert not plan.enabled and not plan.problems


@pytest.mark.parametrize(
    ("env", "traces", "metrics"),
    [
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4317"}, ("otlp",), ("otlp",)),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:4318/v1/traces"}, ("otlp",), ()),
        ({"OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": "http://c:4318/v1/metrics"}, (), ("otlp",)),
        ({"OTEL_TRACES_EXPORTER": "console"}, ("console",), ()),
        ({"OTEL_METRICS_EXPORTER": "prometheus"}, (), ("prometheus",)),
        ({"OTEL_METRICS_EXPORTER": "otlp,prometheus"}, (), ("otlp", "prometheus")),
        (
            {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4317", "OTEL_TRACES_EXPORTER": "none"},
            (),
            ("otlp",),
        ),
        (
            {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4317", "OTEL_SDK_DISABLED": "true"},
            (),
            (),
        ),
        ({"OTEL_TRACES_EXPORTER": "otlp", "OTEL_SDK_DISABLED": "TRUE"}, (), ()),
    ],
)
def test_plan_from_standard_variables(
    env: dict[str, str], traces: tuple[str, ...], metrics: tuple[str, ...]
) -> None:
    plan = plan_from_env(env)
    assert (plan.traces, plan.metrics) == (traces, metrics)
    assert not plan.problems


def test_protocols_per_signal() -> None:
    plan = plan_from_env(
        {
            "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318",
            "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
            "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL": "grpc",
        }
    )
    assert (plan.traces_protocol, plan.metrics_protocol) == ("http/protobuf", "grpc")
    assert plan_from_env({}).traces_protocol == "grpc"


def test_malformed_values_name_the_variable() -> None:
    plan = plan_from_env(
        {
            "OTEL_TRACES_EXPORTER": "zipkin",
            "OTEL_METRICS_EXPORTER": "prometheus",
            "OTEL_EXPORTER_OTLP_PROTOCOL": "http/json",
            "OTEL_EXPORTER_PROMETHEUS_PORT": "nine",
        }
    )
    assert plan.traces == () and plan.metrics == ("prometheus",)
    assert plan.prometheus_port == 9464
    assert len(plan.problems) == 3
    for name in (
        "OTEL_TRACES_EXPORTER",
        "OTEL_EXPORTER_OTLP_PROTOCOL",
        "OTEL_EXPORTER_PROMETHEUS_PORT",
    ):
        assert sum(name in p for p in plan.problems) == 1


def test_prometheus_is_loopback_unless_configured() -> None:
    plan = plan_from_env({"OTEL_METRICS_EXPORTER": "prometheus"})
    assert (plan.prometheus_host, plan.prometheus_port) == ("127.0.0.1", 9464)
    plan = plan_from_env(
        {
            "OTEL_METRICS_EXPORTER": "prometheus",
            "OTEL_EXPORTER_PROMETHEUS_HOST": "0.0.0.0",
            "OTEL_EXPORTER_PROMETHEUS_PORT": "9100",
        }
    )
    assert (plan.prometheus_host, plan.prometheus_port) == ("0.0.0.0", 9100)


def _site(line: int, kind: str = "requests.Session") -> dict[str, object]:
    return {"kind": kind, "file": "/app.py", "line": line, "function": "f"}


def test_series_are_capped_and_stable() -> None:
    series = SeriesMap(cap=2)
    first = series.attributes(_site(1))
    assert first == {
        "leakagent.kind": "requests.Session",
        "code.file.path": "/app.py",
        "code.line.number": 1,
        "code.function.name": "f",
    }
    assert series.attributes(_site(2)) is not None
    assert series.attributes(_site(3)) is None  # overflow
    assert series.attributes(_site(1)) is first  # a site keeps its series
    assert series.attributes(_site(3)) is None  # and an overflowed one stays there
    assert OVERFLOW == "otel.metric.overflow"


def test_span_limiter_per_site_and_window() -> None:
    limiter = SpanLimiter(rate=2)
    key = ("k", "/a.py", 1, "f")
    other = ("k", "/a.py", 2, "f")
    assert limiter.allow(key, 0.0) == 0
    assert limiter.allow(key, 1.0) == 0
    assert limiter.allow(key, 2.0) is None
    assert limiter.allow(key, 3.0) is None
    assert limiter.allow(other, 3.0) == 0  # per call site
    assert limiter.allow(key, 61.0) == 2  # next window, says how many were held back
    assert SpanLimiter(rate=0).allow(key, 0.0) is None


def test_span_limiter_bounds_its_sites() -> None:
    limiter = SpanLimiter(rate=1, max_sites=2)
    assert limiter.allow(("k", "f", 1, ""), 0.0) == 0
    assert limiter.allow(("k", "f", 2, ""), 0.0) == 0
    assert limiter.allow(("k", "f", 3, ""), 0.0) is None


def test_settings_are_documented_and_validated() -> None:
    names = {s.env for s in config.SETTINGS}
    assert {
        "LEAKAGENT_OTEL_MAX_SERIES",
        "LEAKAGENT_OTEL_SPAN_RATE",
        "LEAKAGENT_OTEL_EXIT_TIMEOUT",
        "LEAKAGENT_CGROUP_ROOT",
    } <= names
    loaded = config.load(
        {
            "LEAKAGENT_OTEL_MAX_SERIES": "0",
            "LEAKAGENT_OTEL_SPAN_RATE": "many",
            "LEAKAGENT_OTEL_EXIT_TIMEOUT": "-1",
        }
    )
    assert (loaded.otel_max_series, loaded.otel_span_rate, loaded.otel_exit_timeout) == (
        500,
        10,
        0.4,
    )
    assert len(loaded.problems) == 3
    for name in (
        "LEAKAGENT_OTEL_MAX_SERIES",
        "LEAKAGENT_OTEL_SPAN_RATE",
        "LEAKAGENT_OTEL_EXIT_TIMEOUT",
    ):
        assert sum(name in p for p in loaded.problems) == 1
    good = config.load({"LEAKAGENT_OTEL_SPAN_RATE": "0", "LEAKAGENT_OTEL_EXIT_TIMEOUT": "0.5"})
    assert (good.otel_span_rate, good.otel_exit_timeout) == (0, 0.5)


def _environment(argv: list[str]) -> tuple[dict[str, str], list[str]]:
    parser = cli._parser()
    options = parser.parse_args(cli._optional_values(parser, argv))
    return cli._environment(options, "/site"), list(options.command)


def test_otlp_flag_without_endpoint_does_not_eat_the_command() -> None:
    env, command = _environment(["--otlp", "python", "app.py"])
    assert command == ["python", "app.py"]
    assert env["OTEL_TRACES_EXPORTER"] == "otlp" and env["OTEL_METRICS_EXPORTER"] == "otlp"


def test_otlp_flag_with_endpoint_and_protocol() -> None:
    env, command = _environment(
        ["--otlp", "collector:4318", "--otlp-protocol", "http/protobuf", "python", "a.py"]
    )
    assert command == ["python", "a.py"]
    assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://collector:4318"
    assert env["OTEL_EXPORTER_OTLP_PROTOCOL"] == "http/protobuf"
    env, _ = _environment(["--otlp=https://otel.example:4317", "python"])
    assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "https://otel.example:4317"


def test_prometheus_flag_and_both() -> None:
    env, command = _environment(["--prometheus", "python", "--prometheus"])
    assert command == ["python", "--prometheus"]  # the program's own arguments are untouched
    assert env["OTEL_METRICS_EXPORTER"] == "prometheus"
    assert "OTEL_EXPORTER_PROMETHEUS_PORT" not in env or env["OTEL_EXPORTER_PROMETHEUS_PORT"]
    env, _ = _environment(
        ["--threshold", "5", "--otlp", "--prometheus", "9100", "--service-name", "svc", "python"]
    )
    assert env["OTEL_METRICS_EXPORTER"] == "otlp,prometheus"
    assert env["OTEL_EXPORTER_PROMETHEUS_PORT"] == "9100"
    assert env["OTEL_SERVICE_NAME"] == "svc"
    assert env["LEAKAGENT_THRESHOLD"] == "5"


def test_opentelemetry_instrument_runs_the_launcher_inside() -> None:
    command = cli._through_opentelemetry_instrument(
        [
            "/venv/bin/opentelemetry-instrument",
            "--traces_exporter",
            "console",
            "--service_name=svc",
            "python",
            "app.py",
            "--flag",
        ]
    )
    index = command.index("-m")
    assert command[:3] == ["/venv/bin/opentelemetry-instrument", "--traces_exporter", "console"]
    assert command[3] == "--service_name=svc"
    assert command[4] == sys.executable
    assert command[index + 1 :] == ["leakagent", "python", "app.py", "--flag"]
    assert cli._through_opentelemetry_instrument(["python", "app.py"]) == ["python", "app.py"]


def test_malformed_otlp_timeout_and_endpoint_cost_only_their_part() -> None:
    """Issue 13 item 7: each named once; the timeout handed over, the exporter left out."""
    plan = plan_from_env(
        {
            "OTEL_EXPORTER_OTLP_ENDPOINT": "http://[::1",
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:4317",
            "OTEL_EXPORTER_OTLP_TIMEOUT": "abc",
            "OTEL_METRICS_EXPORTER": "otlp,prometheus",
        }
    )
    assert plan.traces == ("otlp",) and plan.metrics == ("prometheus",)
    assert plan.traces_timeout == 10.0
    assert len(plan.problems) == 2
    assert sum("OTEL_EXPORTER_OTLP_TIMEOUT" in p for p in plan.problems) == 1
    assert sum("OTEL_EXPORTER_OTLP_ENDPOINT" in p and "[::1" not in p for p in plan.problems) == 1
    good = plan_from_env({"OTEL_EXPORTER_OTLP_ENDPOINT": "127.0.0.1:4317"})
    assert good.traces == ("otlp",) and good.traces_timeout is None and not good.problems


def test_malformed_headers_are_named_never_quoted() -> None:
    """Issue 15 item 10: the variable named, the token never; the good pairs kept."""
    env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4317",
        "OTEL_EXPORTER_OTLP_HEADERS": "authorization=Bearer%20tok-1,junk tok-2",
        "OTEL_RESOURCE_ATTRIBUTES": "a=b,oops tok-3",
    }
    plan = plan_from_env(env)
    assert plan.traces_headers == plan.metrics_headers == {"authorization": "Bearer tok-1"}
    assert len(plan.problems) == 2
    assert not any("tok-" in p for p in plan.problems)
    fine = plan_from_env({**env, "OTEL_EXPORTER_OTLP_HEADERS": "a=b", "OTEL_RESOURCE_ATTRIBUTES": ""})
    assert fine.traces_headers is None and not fine.problems


def _origin_site(line: int, origin: str, created: int, suspect: bool = False) -> dict[str, object]:
    return {
        "kind": "threading.local", "base": None, "file": "f.py", "line": line,
        "function": "f", "created": created, "live": created, "max_per_thread": created,
        "suspect": suspect, "verdict": "churn" if suspect else None, "origin": origin,
    }


@pytest.mark.parametrize("show", [None, "1"])
def test_internal_sites_are_one_series_unless_asked(
    monkeypatch: pytest.MonkeyPatch, show: str | None
) -> None:
    """Issue 10 item 4: stdlib/agent sites that are not suspects are summed into one series
    per kind (the totals stay exact) unless LEAKAGENT_SHOW_INTERNAL=1 lists them."""
    from leakagent.outputs.telemetry._instruments import ORIGIN, Instruments

    if show is None:
        monkeypatch.delenv("LEAKAGENT_SHOW_INTERNAL", raising=False)
    else:
        monkeypatch.setenv("LEAKAGENT_SHOW_INTERNAL", show)
    sites = [
        _origin_site(1, "user", 5),
        _origin_site(2, "stdlib", 1),
        _origin_site(3, "agent", 2),
        _origin_site(4, "stdlib", 60, suspect=True),
        _origin_site(5, "library", 3),
    ]

    class Fake(Instruments):
        def sites(self) -> list[dict[str, object]]:  # type: ignore[override]
            return sites

    fake = Fake()
    fake.config = config.load({} if show is None else {"LEAKAGENT_SHOW_INTERNAL": show})
    fake.series = SeriesMap(100)
    points = list(fake._observe_created())
    assert sum(p.value for p in points) == 71  # exact either way
    lines = sorted(p.attributes["code.line.number"] for p in points if "code.line.number" in p.attributes)
    internal = [p for p in points if p.attributes.get(ORIGIN) == "internal"]
    if show is None:
        assert lines == [1, 4, 5]
        assert [(p.value, p.attributes["leakagent.kind"]) for p in internal] == [(3, "threading.local")]
        assert sorted(
            p.attributes["code.line.number"] for p in fake._observe_max_per_thread()
        ) == [1, 4, 5]
    else:
        assert lines == [1, 2, 3, 4, 5] and internal == []


@pytest.mark.parametrize(
    "endpoint",
    [
        "http://127.0.0.1:4317",
        "https://collector:4318/v1/traces",
        "localhost:4317",
        "collector",
        "HTTP://Host:1/",
        "http://:4317",
        "http://host:99999",
        "http://host:",
        "http://[::1]:4317",
        "grpc://x:1",
        "http://user@host:1",
        "http://host:12a",
        "http://host:\uff11\uff12",
        "::1",
        "host:4317/path?x=1",
    ],
)
def test_endpoint_check_without_urllib_agrees_with_urlsplit(endpoint: str) -> None:
    # the quick check (no urllib.parse import before the first line) may only say "valid"
    # where urlsplit does, and the answer is always urlsplit's
    from urllib.parse import urlsplit

    from leakagent.outputs.telemetry import _plainly_valid, endpoint_is_valid

    try:
        parts = urlsplit(endpoint if "://" in endpoint else "http://" + endpoint)
        parts.port  # noqa: B018 (raises ValueError out of range)
        expected = bool(parts.hostname)
    except ValueError:
        expected = False
    assert endpoint_is_valid(endpoint) is expected
    assert not _plainly_valid(endpoint) or expected
