"""``leakagent report REPORT.json``: read a saved report as the answer.

A report left behind by a process that was killed (the OOM killer's SIGKILL leaves no exit
summary) reads the same as the summary the process would have printed, followed by the
memory warnings and small text charts of memory and live instances over time, drawn from the
report's bounded time series. ``--html OUT.html`` writes the same with SVG charts made by
pygal (the ``viewer`` extra: ``pip install '.[viewer]'`` in a clone of the repository).

A program literally named ``report`` runs under the launcher as ``leakagent -- report``.
"""

from __future__ import annotations

import argparse
import json
import sys

from leakagent.outputs import report as report_mod
from leakagent.outputs.timeseries import series_sites

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Any, Optional

EXIT_UNREADABLE = 1
BLOCKS = " ▁▂▃▄▅▆▇█"
ASCII_BLOCKS = " .:-=+*#%"


def load(path: str) -> dict[str, Any]:
    """Read a JSON report; ``ValueError`` with a readable message if it is not one."""
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc.strerror or exc}") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not JSON ({exc})") from None
    if not isinstance(data, dict) or "schema_version" not in data or "suspects" not in data:
        raise ValueError(f"{path} is not a leakagent report")
    if data["schema_version"] > report_mod.SCHEMA_VERSION:
        sys.stderr.write(
            f"leakagent: {path} has schema version {data['schema_version']}, newer than this "
            f"leakagent's {report_mod.SCHEMA_VERSION}: some of it may not be shown\n"
        )
    return data


def _columns(values: Sequence[float], width: int) -> list[float]:
    """At most ``width`` values: the maximum of each slice (a peak is never hidden)."""
    if len(values) <= width:
        return list(values)
    out = []
    for column in range(width):
        start = column * len(values) // width
        end = max((column + 1) * len(values) // width, start + 1)
        out.append(max(values[start:end]))
    return out


def sparkline(values: Sequence[float], width: int = 60, blocks: str = BLOCKS) -> str:
    """One line of blocks, scaled from 0 to the maximum."""
    columns = _columns(values, width)
    top = max(columns, default=0) or 1
    steps = len(blocks) - 1
    return "".join(blocks[round(v / top * steps)] if v > 0 else blocks[0] for v in columns)


def chart(
    values: Sequence[float],
    *,
    height: int = 8,
    width: int = 60,
    label: Any = str,
    ceiling: Optional[float] = None,
    full: str = "█",
) -> list[str]:
    """A column chart: ``height`` rows, the y axis labelled with ``label(value)``.

    ``ceiling`` (a memory limit) scales the chart when it is above the data, so the chart
    shows how close the values came to it.
    """
    columns = _columns(values, width)
    top = max(max(columns, default=0), ceiling or 0) or 1
    labels = [label(top * (row + 1) / height) for row in range(height)]
    pad = max(len(text) for text in labels)
    axis = "┤" if full == "█" else "|"
    # The row holding the ceiling draws it as a dashed line across the empty cells.
    ceiling_row = min(int(ceiling / top * height), height - 1) if ceiling else -1
    lines = []
    for row in range(height - 1, -1, -1):
        level = top * (row + 0.5) / height
        empty = "-" if row == ceiling_row else " "
        cells = "".join(full if value >= level else empty for value in columns)
        suffix = " limit" if row == ceiling_row else ""
        lines.append(f"{labels[row]:>{pad}} {axis}{cells}{suffix}")
    return lines


def _duration(seconds: float) -> str:
    seconds = max(seconds, 0.0)
    if seconds < 120:
        return f"{seconds:.1f}s"
    minutes, seconds = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{seconds:02d}s"


def _encodable(text: str) -> bool:
    encoding = getattr(sys.stdout, "encoding", None) or "ascii"
    try:
        text.encode(encoding)
    except (UnicodeEncodeError, LookupError):
        return False
    return True


def _site_key(site: dict[str, Any]) -> tuple[Any, ...]:
    return (site.get("kind"), site.get("file"), site.get("line"), site.get("function"))


def _per_site_lines(
    data: dict[str, Any], rss: list[int], width: int, blocks: str, all_sites: bool = False
) -> list[str]:
    """Each suspect's creations and live instances over time, under the process memory on
    the same time axis (each line scaled to its own peak); then the other sites' lines."""
    by_key = {_site_key(site): site for site in data.get("sites") or []}
    show_internal = all_sites or bool((data.get("agent") or {}).get("show_internal"))
    base = (data.get("process") or {}).get("program_dir")
    series = [
        (site, created, live)
        for site, created, live in series_sites(data)
        if report_mod.listed(by_key.get(_site_key(site), site), show_internal)
    ]
    suspects = [item for item in series if by_key.get(_site_key(item[0]), {}).get("suspect")]
    others = [item for item in series if item not in suspects]
    lines: list[str] = []
    if not series:
        return lines
    column = max(len("created"), len("memory (RSS)")) + 2
    lines.append("")
    lines.append("per call site, on the same time axis as the memory (each line scaled to its "
                 "own peak):")
    lines.append(
        f"  {'memory (RSS)':<{column}}{sparkline(rss, width, blocks)}  "
        f"{report_mod.human_bytes(rss[0])} -> {report_mod.human_bytes(rss[-1])}"
    )
    for number, (site, created, live) in enumerate(suspects[:5], 1):
        full = by_key.get(_site_key(site), {})
        peak = max(full.get("live_peak", 0), max(live, default=0))
        memory = report_mod.memory_text(full)
        lines.append(
            f"  {number}. {site['kind']} at {report_mod.where(site, base)}"
            + (f" ({memory})" if memory else "")
        )
        lines.append(
            f"  {'  created':<{column}}{sparkline(created, width, blocks)}  "
            f"{created[0]} -> {full.get('created', created[-1])}"
        )
        lines.append(
            f"  {'  live':<{column}}{sparkline(live, width, blocks)}  "
            f"now {full.get('live', live[-1])} (peak {peak})"
        )
    if others:
        lines.append("  other call sites (live instances):")
        for site, created, live in others[:5]:
            full = by_key.get(_site_key(site), {})
            lines.append(
                f"  {'':<{column}}{sparkline(live, width, blocks)}  now "
                f"{full.get('live', live[-1])} (peak {max(full.get('live_peak', 0), *live)}), "
                f"created {full.get('created', created[-1])}: {site['kind']} at "
                f"{report_mod.where(site, base)}"
            )
    return lines


def render(data: dict[str, Any], *, all_sites: bool = False, width: int = 60) -> str:
    """The text the viewer prints."""
    unicode = _encodable(BLOCKS + "┤—")
    blocks = BLOCKS if unicode else ASCII_BLOCKS
    full = "█" if unicode else "#"
    process = data.get("process", {})
    state = (
        "final (written at exit)"
        if data.get("final")
        else "NOT final: the process did not exit normally (killed — by the OOM killer? — "
        "or still running); this is its last periodic report"
    )
    lines = [
        f"report of pid {process.get('pid')} ({' '.join(process.get('argv') or [])}), "
        f"python {process.get('python')}, leakagent {data.get('agent', {}).get('version')}",
        f"started {process.get('started_at')}, written {data.get('generated_at')}: {state}",
        "",
        report_mod.render_text(data, all_sites=all_sites, show_internal=all_sites or None),
    ]
    if not unicode:
        lines = [line.replace("—", "-") for line in lines]
    memory = data.get("memory") or {}
    if memory.get("rss") is not None:
        limit = memory.get("limit")
        lines.append("")
        lines.append(
            f"memory: RSS {report_mod.human_bytes(memory.get('rss'))} at the last reading, "
            f"peak {report_mod.human_bytes(memory.get('rss_peak'))}; limit "
            + (
                f"{report_mod.human_bytes(limit)} ({memory.get('limit_source')})"
                if limit
                else "none known (set LEAKAGENT_MEMORY_LIMIT for warnings)"
            )
        )
        for warning in memory.get("warnings") or []:
            lines.append(
                f"  {warning['at']}: crossed {warning['fraction']:.0%} of the limit "
                f"(RSS {report_mod.human_bytes(warning['rss'])})"
            )
            for site in warning.get("top") or []:
                lines.append(
                    f"     +{site['growth']} live {site['kind']} at "
                    f"{report_mod.display_path(site['file'])}:{site['line']} in "
                    f"{site['function']}{' (suspect)' if site.get('suspect') else ''}"
                )
    points = (data.get("timeseries") or {}).get("points") or []
    if len(points) >= 2:
        span = f"{_duration(points[0]['t'])} to {_duration(points[-1]['t'])} after start"
        rss = [p.get("rss") or 0 for p in points]
        lines.append("")
        lines.append(f"memory (RSS) over time, {span}, {len(points)} points:")
        lines.extend(
            chart(
                rss,
                width=width,
                label=report_mod.human_bytes,
                ceiling=memory.get("limit"),
                full=full,
            )
        )
        lines.append("")
        lines.append("live instances over time (all tracked call sites):")
        lines.extend(
            chart(
                [p.get("live", 0) for p in points],
                width=width,
                height=5,
                full=full,
                label=lambda v: f"{v:.0f}",
            )
        )
        lines.extend(_per_site_lines(data, rss, width, blocks, all_sites))
    elif not points:
        lines.append("")
        lines.append(
            "(no time series: the report was written without the memory watcher; it is "
            "kept when LEAKAGENT_REPORT is set and LEAKAGENT_MEMORY_WATCH is on)"
        )
    return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="leakagent report",
        description="Render a saved leakagent JSON report: the summary, the memory warnings "
        "and charts of memory and live instances over time.",
    )
    parser.add_argument("path", metavar="REPORT.json")
    parser.add_argument(
        "--all",
        action="store_true",
        help="list every call site, not only suspects (the standard library's and the "
        "agent's own too)",
    )
    parser.add_argument("--width", type=int, default=60, help="width of the charts (default 60)")
    parser.add_argument(
        "--html",
        metavar="OUT.html",
        help="also write an HTML page: suspect cards, code, charts (needs pygal: the viewer "
        "extra)",
    )
    return parser


def main(argv: Sequence[str]) -> int:
    """``leakagent report ...``."""
    options = _parser().parse_args(list(argv))
    try:
        data = load(options.path)
    except ValueError as exc:
        sys.stderr.write(f"leakagent report: {exc}\n")
        return EXIT_UNREADABLE
    print(render(data, all_sites=options.all, width=max(options.width, 10)))
    if options.html:
        try:
            from leakagent.tools.html_report import write_html
        except ImportError as exc:
            sys.stderr.write(
                f"leakagent report: --html needs pygal ({exc}); install the viewer extra "
                "(pip install '.[viewer]' in a clone of leakagent)\n"
            )
            return EXIT_UNREADABLE
        if options.all:  # the page lists the internal sites too
            data = {**data, "agent": {**(data.get("agent") or {}), "show_internal": True}}
        write_html(data, options.html, render(data, all_sites=options.all, width=options.width))
        print(f"\nHTML report: {options.html}")
    return 0
