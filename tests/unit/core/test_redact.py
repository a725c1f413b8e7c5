"""Credentials on the command line never reach the report."""

from __future__ import annotations

from leakagent.core.redact import argv_mode, is_credential_name, redact_argv


def test_credential_names() -> None:
    for name in ("--password", "--db-password", "--api-key", "--aws_secret_access_key",
                 "--token", "-X-Auth-Token", "--client-secret", "--passwd", "PGPASSWORD",
                 "--credentials", "--apikey"):
        assert is_credential_name(name), name
    for name in ("--verbose", "--keyboard-layout", "--workers", "--passes", "--monkey"):
        assert not is_credential_name(name), name


def test_values_are_hidden_and_the_rest_kept() -> None:
    argv = ["app.py", "--password=hunter2", "--token", "abc123", "--verbose",
            "PGPASSWORD=s3cret", "--url", "postgres://bob:pw0rd@db:5432/x?sslmode=require",
            "--workers", "4", "--api-key", "-", "plain-word"]
    assert redact_argv(argv, "redacted") == [
        "app.py", "--password=***", "--token", "***", "--verbose", "PGPASSWORD=***",
        "--url", "postgres://bob:***@db:5432/x?sslmode=require", "--workers", "4",
        "--api-key", "-", "plain-word",
    ]


def test_switches() -> None:
    argv = ["app.py", "--password=hunter2"]
    assert redact_argv(argv, "full") == argv
    assert redact_argv(argv, "none") == ["app.py"]
    assert argv_mode({"LEAKAGENT_ARGV": "FULL"}) == "full"
    assert argv_mode({"LEAKAGENT_ARGV": "bogus"}) == argv_mode({}) == "redacted"
