"""The report: a JSON document (schema in ``docs/report.md``) and its text rendering.

The text is rendered from the JSON document alone, so a report saved by a killed container
reads the same as the summary the process would have printed.
"""

from __future__ import annotations

import os
import sys
import time

from leakagent._version import __version__
from leakagent.core.redact import redact_argv
from leakagent.core.tracker import LOCAL_KIND, RETENTION
from leakagent.outputs import sizing, source

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
_THREAD_CHURN_HINT = (
    "one per thread, but the threads keep changing (a new thread per task or request): "
    "thread churn defeats the per-thread cache; share one client, or keep the threads "
    "(a fixed pool)"
)
_RETENTION_HINT = (
    "; the instances stay alive: something keeps every one of them (a list, a dict, a cache)"
)
INTERNAL_ORIGINS = ("stdlib", "agent")
"""Origins of sites that are not the program's: counted, but listed only when asked."""


def _assigned_name(text: str) -> Optional[str]:
    """``thread_local`` of ``thread_local = threading.local()`` (a plain or attribute name)."""
    target, equals, value = text.partition("=")
    target = target.strip()
    if not equals or not value.strip().startswith(("threading.local(", "local(", "_local(")):
        return None
    if not target or not all(part.isidentifier() for part in target.split(".")):
        return None
    return target


def _code_line(site: dict[str, Any]) -> Optional[str]:
    for number, text in site.get("code") or ():
        if number == site.get("line"):
            return str(text).strip()
    return None


def hint(site: dict[str, Any]) -> str:
    """A one-line hint of the fix for a suspect site (concrete when its code is known)."""
    is_local = site["kind"] == LOCAL_KIND or site.get("base") == LOCAL_KIND
    text = _LOCAL_HINT if is_local else _CLIENT_HINT
    line = (_code_line(site) or "").split("#")[0].strip()
    name = _assigned_name(line) if is_local else None
    if site.get("cause") == "thread_churn":
        text = _THREAD_CHURN_HINT
    elif name and site.get("verdict") != RETENTION:
        function = site.get("function") or "the function"
        attribute = name.split(".")[-1]
        text = (
            f"`{line}` runs on every call of {function}(), so its cache "
            f"is always empty: create the local once, at module level (`{attribute} = "
            f"threading.local()` next to the imports) or in __init__ (`self.{attribute} = "
            f"threading.local()`), and read it in {function}()"
        )
    if site.get("verdict") == RETENTION:
        text += _RETENTION_HINT
    return text


def origin(site: dict[str, Any]) -> str:
    """The site's ``origin`` field; for reports without it, told from the file's path."""
    given = site.get("origin")
    if given:
        return str(given)
    path = site.get("file") or ""
    if "site-packages" in path or "dist-packages" in path:
        return "agent" if f"{os.sep}leakagent{os.sep}" in path else "library"
    if path.startswith(_AGENT_DIR):
        return "agent"
    if path.startswith(_STDLIB_DIR):
        return "stdlib"
    return "user"


_AGENT_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep
_STDLIB_DIR = os.path.dirname(os.__file__) + os.sep


def listed(site: dict[str, Any], show_internal: bool = False) -> bool:
    """Whether a summary lists ``site``: suspects and the program's (and libraries') sites;
    the standard library's and the agent's only with ``show_internal``."""
    return bool(show_internal or site.get("suspect") or origin(site) not in INTERNAL_ORIGINS)


def _iso(timestamp: Optional[float]) -> Optional[str]:
    if not timestamp:
        return None
    seconds = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(timestamp))
    return f"{seconds}.{int(timestamp % 1 * 1000):03d}Z"


iso = _iso
"""ISO 8601 UTC with milliseconds, as everywhere in the report."""


def _site_json(
    site: dict[str, Any], sizes: dict[tuple[str, str, int, str], tuple[Optional[int], int]]
) -> dict[str, Any]:
    out = dict(site)
    for key in ("first_seen", "last_seen", "suspect_since"):
        out[key] = _iso(site.get(key))
    each, live_bytes = sizes.get((site["kind"], site["file"], site["line"], site["function"]),
                                 (None, None))
    out["bytes_per_instance"] = each
    out["live_bytes"] = live_bytes if each is not None else None
    if site["suspect"]:
        out["code"] = source.context(site["file"], site["line"])
        out["hint"] = hint(out)
    return out


def _program_dir() -> Optional[str]:
    """The directory of the program's script (``sys.argv[0]``), where it is a file."""
    try:
        script = sys.argv[0] if sys.argv else ""
        if script and os.path.isfile(script):
            return os.path.dirname(os.path.abspath(script))
        return os.getcwd()
    except (OSError, ValueError):
        return None


def build(
    tracker: Tracker,
    *,
    final: bool = False,
    sections: Optional[dict[str, Any]] = None,
    show_internal: bool = False,
) -> dict[str, Any]:
    """The JSON-ready report of ``tracker`` now; ``sections`` adds top-level sections
    (``memory`` and ``timeseries`` from :mod:`leakagent.outputs.memwatch`). Suspects carry
    their code and every measured site its memory (:mod:`leakagent.outputs.sizing`)."""
    sizes = sizing.site_bytes(tracker)
    sites = [_site_json(s, sizes) for s in tracker.snapshot()]
    data = {
        "schema_version": SCHEMA_VERSION,
        "generated_at": _iso(time.time()),
        "final": final,
        "agent": {
            "version": __version__,
            "threshold": tracker.threshold,
            "show_internal": show_internal,
        },
        "process": {
            "pid": os.getpid(),
            "ppid": os.getppid(),
            "argv": redact_argv(sys.argv),  # credentials' values hidden (core/redact.py)
            "executable": sys.executable,
            "python": sys.version.split()[0],
            "started_at": _iso(tracker.started),
            "program_dir": _program_dir(),
        },
        "totals": tracker.totals(),
        "suspects": [s for s in sites if s["suspect"]],
        "sites": sites,
    }
    if sections:
        data.update(sections)
    return data


def display_path(path: str, base: Optional[str] = None) -> str:
    """``path`` as a person reads it: an installed library's or the standard library's from
    its package (``botocore/client.py``), else relative to the current directory or to
    ``base`` (the program's directory) when it lies below one of them."""
    for marker in ("site-packages", "dist-packages"):
        cut = path.rfind(f"{os.sep}{marker}{os.sep}")
        if cut >= 0:
            return path[cut + len(marker) + 2 :]
    if path.startswith(_STDLIB_DIR):
        return path[len(_STDLIB_DIR) :]
    roots = []
    try:
        roots.append(os.getcwd())
    except OSError:
        pass
    if base:
        roots.append(base)
    for root in roots:
        root = root.rstrip(os.sep)
        if root and path.startswith(root + os.sep):
            return path[len(root) + 1 :]
    return path


def short_bytes(value: Optional[float]) -> str:
    """``1.0 MB``, ``200 MB``: decimal units, two significant figures, for estimates."""
    if value is None:
        return "?"
    size = float(value)
    for unit in ("B", "kB", "MB", "GB"):
        if abs(size) < 1000:
            return f"{size:.0f} {unit}" if unit == "B" or size >= 10 else f"{size:.1f} {unit}"
        size /= 1000
    return f"{size:.1f} TB"


def memory_text(site: dict[str, Any]) -> Optional[str]:
    """``~1.0 MB each, ~200 MB live`` when the site was measured."""
    each = site.get("bytes_per_instance")
    if each is None:
        return None
    live_bytes = site.get("live_bytes")
    if live_bytes is None:
        live_bytes = each * (site.get("live") or 0)
    return f"~{short_bytes(each)} each, ~{short_bytes(live_bytes)} live"


def where(site: dict[str, Any], base: Optional[str] = None) -> str:
    """``file:line in function`` (and the library frame it went through, when known)."""
    text = f"{display_path(site['file'], base)}:{site['line']} in {site['function']}"
    if site.get("via"):
        text += f" (via {site['via']})"
    return text


def kind_label(site: dict[str, Any]) -> str:
    """The kind, with its base when it is a subclass."""
    base = site.get("base")
    return f"{site['kind']} (a {base})" if base else site["kind"]


def warning_line(site: dict[str, Any], event: str, threshold: int) -> str:
    """The one line logged when a site becomes a suspect (or turns to retention)."""
    if "code" not in site:
        site = {**site, "code": source.context(site["file"], site["line"])}
    memory = memory_text(site)
    memory = f", {memory}" if memory else ""
    if event == "retention":
        return (
            f"{kind_label(site)} at {where(site)}: {site['live']} instances still alive of "
            f"{site['created']} created (retention{memory}) — {hint(site)}"
        )
    threads = site.get("threads", 1)
    if threads <= 1:
        spread = f"{site['max_per_thread']} times on thread {site['max_thread']}"
    else:
        spread = (
            f"{site['created']} times on {threads} threads "
            f"({site.get('concurrency', threads)} alive at a time)"
        )
    verdict = site["verdict"]
    return (
        f"{kind_label(site)} created {spread} at {where(site)} ({verdict}{memory}) — {hint(site)}"
    )


def render_text(
    report: dict[str, Any], *, all_sites: bool = False, show_internal: Optional[bool] = None
) -> str:
    """The human-readable summary of a JSON report.

    Quiet by default: the standard library's and the agent's own sites that are not suspects
    are counted in the totals but not listed (``show_internal``, default the report's
    ``agent.show_internal``, lists them)."""
    suspects = report["suspects"]
    threshold = report["agent"]["threshold"]
    if show_internal is None:
        show_internal = bool(report["agent"].get("show_internal"))
    totals = report["totals"]
    process = report["process"]
    base = process.get("program_dir")
    lines = []
    if suspects:
        lines.append(
            f"leakagent: {len(suspects)} suspect call site{'s' if len(suspects) != 1 else ''} "
            f"in pid {process['pid']} ({threshold} or more creations of one kind at one place "
            f"beyond one per thread alive at a time)"
        )
    else:
        lines.append(
            f"leakagent: no suspect in pid {process['pid']} "
            f"({totals['created']} creations at {totals['sites']} call sites tracked)"
        )
    for number, site in enumerate(suspects, 1):
        live = f"{site['live']}{'' if site.get('live_exact', True) else '+'}"
        lines.append(f"  {number}. {kind_label(site)} — {site['verdict']}")
        lines.append(f"     at {where(site, base)}")
        lines.append(
            f"     created {site['created']} on {site['threads']} thread"
            f"{'s' if site['threads'] != 1 else ''} (max {site['max_per_thread']} on "
            f"{site['max_thread']}), live {live} (peak {site['live_peak']})"
        )
        memory = memory_text(site)
        if memory:
            lines.append(f"     memory: {memory} (estimate)")
        for code_number, text in site.get("code") or ():
            mark = ">" if code_number == site["line"] else " "
            lines.append(f"     {mark}{code_number:>5} | {text}")
        lines.append(f"     hint: {site.get('hint') or hint(site)}")
    others = [s for s in report["sites"] if not s["suspect"]]
    shown = [s for s in others if listed(s, show_internal)]
    hidden = len(others) - len(shown)
    if all_sites and shown:
        lines.append("  other call sites:")
        for site in shown:
            memory = memory_text(site) if site.get("live") else None
            lines.append(
                f"     {kind_label(site)} at {where(site, base)}: created {site['created']} on "
                f"{site['threads']} thread{'s' if site['threads'] != 1 else ''}, "
                f"live {site['live']}"
                + (f" ({memory})" if memory else "")
            )
    elif shown and suspects:
        lines.append(
            f"  ({len(shown)} other call site{'s' if len(shown) != 1 else ''} tracked, "
            "none suspect)"
        )
    if hidden and (suspects or all_sites):
        lines.append(
            f"  ({hidden} standard-library or agent call site{'s' if hidden != 1 else ''} "
            "not listed; --all or LEAKAGENT_SHOW_INTERNAL=1 lists them)"
        )
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
