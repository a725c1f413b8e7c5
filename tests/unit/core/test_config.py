"""Configuration from LEAKAGENT_* variables: bad values warn and fall back."""

from __future__ import annotations

from leakagent.core import config


def test_defaults() -> None:
    cfg = config.load({})
    assert cfg.enabled and cfg.threshold == 40 and cfg.report_path is None
    assert cfg.summary == "auto" and cfg.problems == ()


def test_values() -> None:
    cfg = config.load(
        {
            "LEAKAGENT_ENABLED": "yes",
            "LEAKAGENT_THRESHOLD": "7",
            "LEAKAGENT_REPORT": "/tmp/r-{pid}.json",
            "LEAKAGENT_REPORT_INTERVAL": "0.5",
            "LEAKAGENT_SUMMARY": "Always",
            "LEAKAGENT_TRACK_LOCALS": "off",
        }
    )
    assert cfg.threshold == 7 and cfg.report_interval == 0.5 and cfg.summary == "always"
    assert cfg.report_path == "/tmp/r-{pid}.json" and not cfg.track_locals


def test_disabled_spellings() -> None:
    for value in ("0", "false", "NO", "off"):
        assert not config.load({"LEAKAGENT_ENABLED": value}).enabled


def test_bad_values_name_the_variable_and_use_defaults() -> None:
    cfg = config.load(
        {
            "LEAKAGENT_THRESHOLD": "lots",
            "LEAKAGENT_REPORT_INTERVAL": "-3",
            "LEAKAGENT_SUMMARY": "loud",
            "LEAKAGENT_ENABLED": "maybe",
            "LEAKAGENT_MAX_SITES": "nan",
        }
    )
    assert cfg.threshold == 40 and cfg.report_interval == 5.0 and cfg.summary == "auto"
    assert cfg.enabled and cfg.max_sites == 10_000
    joined = "\n".join(cfg.problems)
    for name in (
        "LEAKAGENT_THRESHOLD",
        "LEAKAGENT_REPORT_INTERVAL",
        "LEAKAGENT_SUMMARY",
        "LEAKAGENT_ENABLED",
        "LEAKAGENT_MAX_SITES",
    ):
        assert name in joined
    assert len(cfg.problems) == 5


def test_every_setting_is_documented() -> None:
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[3] / "docs" / "configuration.md").read_text()
    for setting in config.SETTINGS:
        assert setting.env in doc, setting.env


def test_show_internal_setting_and_launcher_option() -> None:
    from leakagent.tools import cli

    assert config.load({}).show_internal is False
    assert config.load({"LEAKAGENT_SHOW_INTERNAL": "1"}).show_internal is True
    options = cli._parser().parse_args(["--all", "python", "app.py"])
    assert options.show_internal


NUMERIC = {
    "LEAKAGENT_THRESHOLD": 40,
    "LEAKAGENT_REPORT_INTERVAL": 5.0,
    "LEAKAGENT_MAX_SITES": 10_000,
    "LEAKAGENT_MAX_LIVE_REFS": 200_000,
    "LEAKAGENT_OTEL_MAX_SERIES": 500,
    "LEAKAGENT_OTEL_SPAN_RATE": 10,
    "LEAKAGENT_OTEL_EXIT_TIMEOUT": 0.4,
    "LEAKAGENT_MEMORY_INTERVAL": 1.0,
    "LEAKAGENT_REFRESH_SECONDS": 60.0,
}
FIELDS = {
    "LEAKAGENT_THRESHOLD": "threshold",
    "LEAKAGENT_REPORT_INTERVAL": "report_interval",
    "LEAKAGENT_MAX_SITES": "max_sites",
    "LEAKAGENT_MAX_LIVE_REFS": "max_live_refs",
    "LEAKAGENT_OTEL_MAX_SERIES": "otel_max_series",
    "LEAKAGENT_OTEL_SPAN_RATE": "otel_span_rate",
    "LEAKAGENT_OTEL_EXIT_TIMEOUT": "otel_exit_timeout",
    "LEAKAGENT_MEMORY_INTERVAL": "memory_interval",
    "LEAKAGENT_REFRESH_SECONDS": "refresh_seconds",
}


def test_every_numeric_setting_has_a_sane_range() -> None:
    """inf or 1e10 seconds overflowed the writer's timeout (OverflowError killed it) and
    LEAKAGENT_MEMORY_INTERVAL=inf switched the watcher off: out of range = default + warning."""
    assert set(config.RANGES) == set(NUMERIC)
    for name, default in NUMERIC.items():
        for value in ("inf", "-inf", "nan", "1e10", "99999999999999999999", "-1"):
            loaded = config.load({name: value})
            assert getattr(loaded, FIELDS[name]) == default, (name, value)
            (problem,) = loaded.problems
            assert problem.startswith(f"{name}=") and "in [" in problem, problem


def test_values_inside_the_ranges_are_kept() -> None:
    loaded = config.load({
        "LEAKAGENT_REPORT_INTERVAL": "86400",
        "LEAKAGENT_MEMORY_INTERVAL": "0.01",
        "LEAKAGENT_MAX_LIVE_REFS": "0",
        "LEAKAGENT_OTEL_SPAN_RATE": "0",
    })
    assert loaded.problems == ()
    assert loaded.report_interval == 86400 and loaded.memory_interval == 0.01
