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
