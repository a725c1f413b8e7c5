"""The report: a JSON document (schema in ``docs/report.md``) and its text rendering.

The text is rendered from the JSON document alone, so a report saved by a killed container
reads the same as the summary the process would have printed.
"""

from __future__ import annotations

import os
import sys
import time

from leakagent._version import __version__
from leakagent.core.tracker import LOCAL_KIND, RETENTION

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Optional

    from leakagent.core.tracker import Tracker

SCHEMA_VERSION = 1

_LOCAL_HINT = (
    "a threading.local() created on every call caches nothing: create it once, "
    "at module level or in __init__, and reuse it"
)
_CLIENT_HINT = (
    "create it once and share it (most clients are thread-safe), or cache it per thread "
    "in a threading.local created once at module level"
)
_RETENTION_HINT = (
    "; the instances stay alive: something keeps every one of them (a list, a dict, a cache)"
)


def hint(site: dict[str, Any]) -> str:
    """A one-line hint of the fix for a suspect site."""
    is_local = site["kind"] == LOCAL_KIND or site.get("base") == LOCAL_KIND
    text = _LOCAL_HINT if is_local else _CLIENT_HINT
    if site.get("verdict") == RETENTION:
        text += _RETENTION_HINT
    return text


def _iso(timestamp: Optional[float]) -> Optional[str]:
    if not timestamp:
        return None
    seconds = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(timestamp))
    return f"{seconds}.{int(timestamp % 1 * 1000):03d}Z"


iso = _iso
"""ISO 8601 UTC with milliseconds, as everywhere in the report."""


def _site_json(site: dict[str, Any]) -> dict[str, Any]:
    out = dict(site)
    for key in ("first_seen", "last_seen", "suspect_since"):
        out[key] = _iso(site.get(key))
    if site["suspect"]:
        out["hint"] = hint(site)
    return out


def build(
    tracker: Tracker, *, final: bool = False, sections: Optional[dict[str, Any]] = None
) -> dict[str, Any]:
    """The JSON-ready report of ``tracker`` now; ``sections`` adds top-level sections
    (``memory`` and ``timeseries`` from :mod:`leakagent.outputs.memory`)."""
    sites = [_site_json(s) for s in tracker.snapshot()]
    data = {
        "schema_version": SCHEMA_VERSION,
        "generated_at": _iso(time.time()),
        "final": final,
        "agent": {"version": __version__, "threshold": tracker.threshold},
        "process": {
            "pid": os.getpid(),
            "ppid": os.getppid(),
            "argv": list(sys.argv),
            "executable": sys.executable,
            "python": sys.version.split()[0],
            "started_at": _iso(tracker.started),
        },
        "totals": tracker.totals(),
        "suspects": [s for s in sites if s["suspect"]],
        "sites": sites,
    }
    if sections:
        data.update(sections)
    return data


def display_path(path: str) -> str:
    """``path`` relative to the current directory when it lies below it."""
    try:
        cwd = os.getcwd()
    except OSError:
        return path
    if path.startswith(cwd + os.sep):
        return path[len(cwd) + 1 :]
    return path


def where(site: dict[str, Any]) -> str:
    """``file:line in function``."""
    return f"{display_path(site['file'])}:{site['line']} in {site['function']}"


def kind_label(site: dict[str, Any]) -> str:
    """The kind, with its base when it is a subclass."""
    base = site.get("base")
    return f"{site['kind']} (a {base})" if base else site["kind"]


def warning_line(site: dict[str, Any], event: str, threshold: int) -> str:
    """The one line logged when a site becomes a suspect (or turns to retention)."""
    if event == "retention":
        return (
            f"{kind_label(site)} at {where(site)}: {site['live']} instances still alive of "
            f"{site['created']} created (retention) — {hint(site)}"
        )
    return (
        f"{kind_label(site)} created {site['max_per_thread']} times on thread "
        f"{site['max_thread']} at {where(site)} ({site['verdict']}) — {hint(site)}"
    )


def render_text(report: dict[str, Any], *, all_sites: bool = False) -> str:
    """The human-readable summary of a JSON report."""
    suspects = report["suspects"]
    threshold = report["agent"]["threshold"]
    totals = report["totals"]
    process = report["process"]
    lines = []
    if suspects:
        lines.append(
            f"leakagent: {len(suspects)} suspect call site{'s' if len(suspects) != 1 else ''} "
            f"in pid {process['pid']} (more than {threshold} creations of one kind on one "
            f"thread at one place)"
        )
    else:
        lines.append(
            f"leakagent: no suspect in pid {process['pid']} "
            f"({totals['created']} creations at {totals['sites']} call sites tracked)"
        )
    for number, site in enumerate(suspects, 1):
        live = f"{site['live']}{'' if site.get('live_exact', True) else '+'}"
        lines.append(f"  {number}. {kind_label(site)} — {site['verdict']}")
        lines.append(f"     at {where(site)}")
        lines.append(
            f"     created {site['created']} on {site['threads']} thread"
            f"{'s' if site['threads'] != 1 else ''} (max {site['max_per_thread']} on "
            f"{site['max_thread']}), live {live} (peak {site['live_peak']})"
        )
        lines.append(f"     hint: {site.get('hint') or hint(site)}")
    others = [s for s in report["sites"] if not s["suspect"]]
    if all_sites and others:
        lines.append("  other call sites:")
        for site in others:
            lines.append(
                f"     {kind_label(site)} at {where(site)}: created {site['created']} on "
                f"{site['threads']} threads, live {site['live']}"
            )
    elif others and suspects:
        lines.append(f"  ({len(others)} other call sites tracked, none suspect)")
    memory = report.get("memory")
    if memory and memory.get("warnings"):
        last = memory["warnings"][-1]
        lines.append(
            f"  memory: RSS peaked at {human_bytes(memory.get('rss_peak'))} of a "
            f"{human_bytes(memory.get('limit'))} limit; warned at "
            + ", ".join(f"{w['fraction']:.0%}" for w in memory["warnings"])
            + f" (last at {last['at']})"
        )
    if totals.get("overflowed"):
        lines.append(
            f"  ({totals['overflowed']} creations at call sites beyond LEAKAGENT_MAX_SITES "
            "were counted together)"
        )
    return "\n".join(lines)


def human_bytes(value: Optional[float]) -> str:
    """``734.0 MiB``."""
    if value is None:
        return "?"
    size = float(value)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(size) < 1024:
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TiB"


def encode(report: dict[str, Any]) -> bytes:
    """The bytes of the JSON report file."""
    import json

    return (json.dumps(report, indent=1) + "\n").encode("utf-8")


def write_json(report: dict[str, Any], path: str) -> None:
    """Write ``report`` to ``path`` atomically and safely (:mod:`leakagent.outputs.reportfile`)."""
    from leakagent.outputs import reportfile

    reportfile.write_atomically(encode(report), path)
