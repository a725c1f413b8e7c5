"""``leakagent report REPORT.json --html OUT.html``: the viewer's page with SVG charts.

Needs pygal (``pip install 'leakagent[viewer]'``), a small pure-Python SVG charting library;
imported only here. The page is self-contained: the SVG is inlined and pygal's optional
tooltip script (fetched from the web by default) is left out.
"""

from __future__ import annotations

import html

import pygal

from leakagent.outputs import report as report_mod
from leakagent.outputs.timeseries import series_sites

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

MIB = 1024 * 1024


def _chart(title: str, y_title: str) -> Any:
    return pygal.XY(
        title=title,
        x_title="seconds since start",
        y_title=y_title,
        disable_xml_declaration=True,
        js=[],
        show_dots=False,
        width=900,
        height=360,
        legend_at_bottom=True,
        truncate_legend=60,
    )


def charts(data: dict[str, Any]) -> list[str]:
    """SVG documents: memory over time, live instances per call site over time."""
    points = (data.get("timeseries") or {}).get("points") or []
    if len(points) < 2:
        return []
    times = [p["t"] for p in points]
    memory = data.get("memory") or {}
    rss_chart = _chart("Memory (RSS)", "MiB")
    rss_chart.add("RSS", [(t, (p.get("rss") or 0) / MIB) for t, p in zip(times, points)])
    if memory.get("limit"):
        limit = memory["limit"] / MIB
        rss_chart.add("limit", [(times[0], limit), (times[-1], limit)])
        for fraction in memory.get("warn_at") or []:
            level = limit * fraction
            rss_chart.add(f"warn at {fraction:.0%}", [(times[0], level), (times[-1], level)])
    live_chart = _chart("Live instances", "instances")
    live_chart.add("all call sites", [(t, p.get("live", 0)) for t, p in zip(times, points)])
    for site, _created, live in series_sites(data)[:5]:
        label = f"{site['kind']} at {report_mod.display_path(site['file'])}:{site['line']}"
        live_chart.add(label, list(zip(times, live)))
    return [str(rss_chart.render()), str(live_chart.render())]


def write_html(data: dict[str, Any], path: str, text: str) -> None:
    """Write the page: the viewer's text, then the charts."""
    process = data.get("process", {})
    title = f"leakagent report, pid {process.get('pid')}"
    body = "\n".join(f"<figure>{svg}</figure>" for svg in charts(data))
    page = (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title>"
        "<style>body{font-family:sans-serif;margin:2em}pre{background:#f6f6f6;padding:1em;"
        "overflow-x:auto}figure{margin:1em 0}</style></head><body>"
        f"<h1>{html.escape(title)}</h1>{body}<pre>{html.escape(text)}</pre></body></html>\n"
    )
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(page)
