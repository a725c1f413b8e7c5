"""The text summary: quiet about the standard library, the code and a concrete hint."""

from __future__ import annotations

import os
from typing import Any

from leakagent.outputs import report

STDLIB_FILE = os.path.join(os.path.dirname(os.__file__), "asyncio", "events.py")


def _site(**fields: Any) -> dict[str, Any]:
    site = {
        "kind": "threading.local", "base": None, "file": "/app/up.py", "line": 24,
        "function": "Uploader.client", "created": 400, "threads": 8, "max_per_thread": 60,
        "max_thread": "T-1", "live": 0, "live_peak": 8, "suspect": True, "verdict": "churn",
    }
    site.update(fields)
    return site


def _report(sites: list[dict[str, Any]], **agent: Any) -> dict[str, Any]:
    return {
        "agent": {"threshold": 50, **agent},
        "process": {"pid": 7, "program_dir": "/app"},
        "totals": {"created": sum(s["created"] for s in sites), "sites": len(sites)},
        "suspects": [s for s in sites if s["suspect"]],
        "sites": sites,
    }


def test_stdlib_sites_are_counted_not_listed_unless_asked() -> None:
    internal = _site(file=STDLIB_FILE, line=713, function="<module>", created=1, threads=1,
                     max_per_thread=1, live=1, suspect=False, verdict=None)
    user = _site(file="/app/up.py", line=9, created=2, suspect=False, verdict=None)
    data = _report([_site(), user, internal])
    text = report.render_text(data, all_sites=True)
    assert "asyncio/events.py" not in text
    assert "1 standard-library or agent call site not listed" in text
    assert "up.py:9" in text
    shown = report.render_text(data, all_sites=True, show_internal=True)
    assert "asyncio/events.py:713" in shown
    asked = _report([_site(), internal], show_internal=True)  # LEAKAGENT_SHOW_INTERNAL=1
    assert "asyncio/events.py:713" in report.render_text(asked, all_sites=True)


def test_an_explicit_origin_wins_over_the_path() -> None:
    assert not report.listed(_site(origin="agent", suspect=False))
    assert report.listed(_site(origin="agent", suspect=True))
    assert report.listed(_site(file=STDLIB_FILE, origin="user", suspect=False))


def test_the_code_and_a_concrete_hint_for_the_seed_pattern() -> None:
    code = [[23, "    def client(self):"],
            [24, "        thread_local = threading.local()  # a new local on every call"],
            [25, '        if "s3" not in thread_local.__dict__:']]
    site = _site(code=code, bytes_per_instance=1_000_000, live_bytes=0)
    site["hint"] = report.hint(site)
    text = report.render_text(_report([site]))
    assert ">   24 |         thread_local = threading.local()" in text
    assert "memory: ~1.0 MB each, ~0 B live (estimate)" in text
    assert "`thread_local = threading.local()` runs on every call of Uploader.client()" in (
        text
    )
    assert "module level" in site["hint"]
    assert "self.thread_local = threading.local()" in site["hint"]


def test_source_context_blanks_literals_on_credential_lines(tmp_path: Any) -> None:
    from leakagent.outputs import source

    path = tmp_path / "app.py"
    path.write_text('a = 1\nclient = make(aws_secret_access_key="s3cr3t", region="eu")\nb = 2\n')
    lines = source.context(str(path), 2, around=1)
    assert lines is not None and [n for n, _ in lines] == [1, 2, 3]
    assert "s3cr3t" not in lines[1][1] and "make(" in lines[1][1]
    assert source.context(str(tmp_path / "missing.py"), 1) is None
