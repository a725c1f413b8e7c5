"""``leakagent report REPORT.json --html OUT.html``: the page a person keeps open.

Suspects first, as cards (kind, verdict, counts, memory, code, hint), then one chart per
suspect (its creations and live instances over time beside the process memory, one time
axis), the memory chart, then the other call sites. Needs pygal (the ``viewer``
extra), a small pure-Python SVG charting library, imported only here. The
page is self-contained (SVG inlined, pygal's tooltip script left out) and written 0600, like
the JSON report: it names the program's files and lines.
"""

from __future__ import annotations

import html
import os
from typing import Any, Optional

import pygal
from pygal.style import Style

from leakagent.outputs import report as report_mod
from leakagent.outputs.timeseries import series_sites

MIB = 1024 * 1024
SUSPECT_CHARTS = 5

_STYLE = Style(
    background="white",
    plot_background="white",
    foreground="#333",
    foreground_strong="#111",
    foreground_subtle="#ddd",
    colors=("#d62728", "#1f77b4", "#7f7f7f", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b"),
    font_family="system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif",
    title_font_size=15,
    label_font_size=12,
    major_label_font_size=12,
    legend_font_size=13,
)

_CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;margin:0;color:#222;
background:#f4f5f7;line-height:1.45}
main{max-width:1100px;margin:0 auto;padding:1.5em 1.5em 3em}
header{background:#1f2937;color:#f9fafb;padding:1.2em 1.5em}
header h1{margin:0;font-size:1.5em;font-weight:600}
header p{margin:.3em 0 0;color:#d1d5db}
code,pre,.where{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,'DejaVu Sans Mono',
'Liberation Mono',monospace}
header code{font-size:.95em;color:#f9fafb}
.state{display:inline-block;padding:.1em .6em;border-radius:1em;font-size:.85em;
font-weight:600;margin-left:.4em}
.state.final{background:#d1fae5;color:#065f46}.state.partial{background:#fee2e2;color:#991b1b}
h2{font-size:1.25em;margin:1.6em 0 .6em}
.summary{font-size:1.05em}
.card{background:#fff;border:1px solid #e5e7eb;border-left:6px solid #d62728;border-radius:6px;
padding:1em 1.2em;margin:0 0 1.2em;box-shadow:0 1px 2px rgba(0,0,0,.05)}
.card h3{margin:0 0 .3em;font-size:1.15em}
.verdict{color:#b91c1c;font-weight:600}
.where{font-size:.95em}
.facts{display:flex;flex-wrap:wrap;gap:.5em 1.6em;margin:.7em 0}
.fact b{display:block;font-size:1.35em}.fact span{color:#6b7280;font-size:.85em}
pre.code{background:#f8fafc;border:1px solid #e5e7eb;border-radius:4px;padding:.6em 0;
overflow-x:auto;font-size:.9em;margin:.6em 0}
pre.code span{display:block;padding:0 1em;white-space:pre}
pre.code span.here{background:#fde68a}
.hint{background:#ecfdf5;border:1px solid #a7f3d0;border-radius:4px;padding:.6em .9em;
margin:.6em 0 0;white-space:normal;overflow-wrap:anywhere}
figure{background:#fff;border:1px solid #e5e7eb;border-radius:6px;margin:0 0 1.2em;
padding:.5em}
figure svg{width:100%;height:auto;display:block}
table{border-collapse:collapse;width:100%;background:#fff;font-size:.95em}
th,td{border-bottom:1px solid #e5e7eb;padding:.4em .6em;text-align:left;vertical-align:top}
td.num{text-align:right;font-variant-numeric:tabular-nums}
details pre{background:#fff;border:1px solid #e5e7eb;padding:1em;overflow-x:auto;font-size:.85em}
.muted{color:#6b7280}
"""


def _site_key(site: dict[str, Any]) -> tuple[Any, ...]:
    return (site.get("kind"), site.get("file"), site.get("line"), site.get("function"))


def _short(site: dict[str, Any], base: Optional[str]) -> str:
    return f"{report_mod.display_path(site['file'], base)}:{site['line']}"


def _number(value: Optional[float]) -> str:
    """Axis labels: no float noise (``116`` not ``116.4648438``)."""
    if value is None:
        return ""
    return f"{value:.0f}" if abs(value) >= 10 else f"{value:.1f}".rstrip("0").rstrip(".")


def _chart(title: str, y_title: str, **extra: Any) -> Any:
    return pygal.XY(
        title=title,
        x_title="seconds since the program started",
        y_title=y_title,
        disable_xml_declaration=True,
        js=[],
        show_dots=False,
        width=1000,
        height=380,
        legend_at_bottom=True,
        legend_at_bottom_columns=3,
        truncate_legend=-1,
        margin_bottom=12,
        value_formatter=_number,
        style=_STYLE,
        **extra,
    )


def _program(data: dict[str, Any]) -> str:
    argv = (data.get("process") or {}).get("argv") or []
    if not argv:
        return "program"
    return str(os.path.basename(argv[0]) or argv[0])


def _command(data: dict[str, Any]) -> str:
    """The program's command line, its script relative to the program's directory."""
    process = data.get("process") or {}
    argv = list(process.get("argv") or [])
    if argv:
        argv[0] = report_mod.display_path(argv[0], process.get("program_dir"))
    return " ".join(argv)


def title(data: dict[str, Any]) -> str:
    """``leakagent: seed_buggy.py (pid 42), started ..., final``."""
    process = data.get("process") or {}
    state = "final" if data.get("final") else "NOT final"
    return (
        f"leakagent: {_program(data)} (pid {process.get('pid')}), started "
        f"{process.get('started_at')}, {state}"
    )


def charts(data: dict[str, Any]) -> list[tuple[str, str]]:
    """(caption, SVG) of each chart: per suspect (creations, live, RSS), then memory."""
    points = (data.get("timeseries") or {}).get("points") or []
    if len(points) < 2:
        return []
    times = [p["t"] for p in points]
    rss = [(t, (p.get("rss") or 0) / MIB) for t, p in zip(times, points)]
    base = (data.get("process") or {}).get("program_dir")
    suspects = {_site_key(s): s for s in data.get("suspects") or []}
    out = []
    number = 0
    for site, created, live in series_sites(data):
        full = suspects.get(_site_key(site))
        if full is None or number >= SUSPECT_CHARTS:
            continue
        number += 1
        where = _short(site, base)
        chart = _chart(
            f"{number}. {site['kind']} at {where}: instances over time, with the process memory",
            "instances",
        )
        chart.add("created so far", list(zip(times, created)))
        chart.add("live", list(zip(times, live)))
        chart.add("process memory (MiB, right axis)", rss, secondary=True)
        out.append((f"suspect {number}: {site['kind']} at {where}", str(chart.render())))
    memory = data.get("memory") or {}
    rss_chart = _chart("Process memory (RSS)", "MiB")
    rss_chart.add("RSS", rss)
    if memory.get("limit"):
        limit = memory["limit"] / MIB
        rss_chart.add("memory limit", [(times[0], limit), (times[-1], limit)])
        for fraction in memory.get("warn_at") or []:
            level = limit * fraction
            rss_chart.add(f"warns at {fraction:.0%}", [(times[0], level), (times[-1], level)])
    out.append(("process memory", str(rss_chart.render())))
    return out


def _fact(value: Any, label: str) -> str:
    return (
        f'<div class="fact"><b>{html.escape(str(value))}</b>'
        f"<span>{html.escape(label)}</span></div>"
    )


def _card(number: int, site: dict[str, Any], base: Optional[str]) -> str:
    live = f"{site['live']}{'' if site.get('live_exact', True) else '+'}"
    facts = [
        _fact(site["created"], "created"),
        _fact(site["threads"], "threads"),
        _fact(site["max_per_thread"], f"most on one thread ({site['max_thread']})"),
        _fact(live, "live now"),
        _fact(site.get("live_peak", 0), "live at peak"),
    ]
    each = site.get("bytes_per_instance")
    if each is not None:
        held = site.get("live_bytes") or 0
        facts.append(_fact(f"~{report_mod.short_bytes(each)}", "each (estimate)"))
        facts.append(_fact(f"~{report_mod.short_bytes(held)}" if held else "0 B", "held live"))
    code = ""
    if site.get("code"):
        rows = "".join(
            f'<span class="{"here" if n == site["line"] else ""}">{n:>5}  {html.escape(str(t))}'
            "</span>"
            for n, t in site["code"]
        )
        code = f'<pre class="code">{rows}</pre>'
    hint = html.escape(site.get("hint") or report_mod.hint(site))
    return (
        f'<section class="card suspect" id="suspect-{number}">'
        f"<h3>{number}. {html.escape(report_mod.kind_label(site))} — "
        f'<span class="verdict">{html.escape(str(site.get("verdict")))}</span></h3>'
        f'<div class="where">at {html.escape(report_mod.where(site, base))}</div>'
        f'<div class="facts">{"".join(facts)}</div>{code}'
        f'<p class="hint"><b>What to change:</b> {hint}</p></section>'
    )


def _others(data: dict[str, Any], base: Optional[str]) -> str:
    show_internal = bool((data.get("agent") or {}).get("show_internal"))
    others = [s for s in data.get("sites") or [] if not s.get("suspect")]
    shown = [s for s in others if report_mod.listed(s, show_internal)]
    hidden = len(others) - len(shown)
    rows = "".join(
        "<tr>"
        f"<td>{html.escape(report_mod.kind_label(s))}</td>"
        f'<td class="where">{html.escape(report_mod.where(s, base))}</td>'
        f'<td class="num">{s["created"]}</td><td class="num">{s["threads"]}</td>'
        f'<td class="num">{s["live"]}</td>'
        f"<td>{html.escape(report_mod.memory_text(s) or '')}</td></tr>"
        for s in shown
    )
    table = (
        "<table><thead><tr><th>kind</th><th>where</th><th>created</th><th>threads</th>"
        f"<th>live</th><th>memory</th></tr></thead><tbody>{rows}</tbody></table>"
        if shown
        else '<p class="muted">none</p>'
    )
    note = (
        f'<p class="muted">{hidden} standard-library or agent call site'
        f"{'s' if hidden != 1 else ''} not listed (LEAKAGENT_SHOW_INTERNAL=1 lists them).</p>"
        if hidden
        else ""
    )
    return f'<h2>Other call sites</h2><div id="others">{table}{note}</div>'


def page(data: dict[str, Any], text: str) -> str:
    """The whole HTML document."""
    process = data.get("process") or {}
    base = process.get("program_dir")
    totals = data.get("totals") or {}
    suspects = data.get("suspects") or []
    memory = data.get("memory") or {}
    final = bool(data.get("final"))
    state = (
        '<span class="state final">final</span>'
        if final
        else '<span class="state partial">NOT final: last periodic report</span>'
    )
    summary = (
        f"{len(suspects)} suspect call site{'s' if len(suspects) != 1 else ''} · "
        f"{totals.get('created', 0)} creations at {totals.get('sites', 0)} call sites"
    )
    if memory.get("rss_peak") is not None:
        summary += f" · memory peak {report_mod.human_bytes(memory.get('rss_peak'))}"
        if memory.get("limit"):
            summary += f" of a {report_mod.human_bytes(memory['limit'])} limit"
    cards = "".join(_card(n, s, base) for n, s in enumerate(suspects, 1)) or (
        '<p class="muted">No suspect: no call site made one kind of client or '
        "threading.local over and over.</p>"
    )
    figures = "".join(
        f'<figure class="chart" aria-label="{html.escape(caption)}">{svg}</figure>'
        for caption, svg in charts(data)
    ) or '<p class="muted">No time series in this report.</p>'
    head_title = title(data)
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(head_title)}</title><style>{_CSS}</style></head><body>"
        f"<header><h1>leakagent: {html.escape(_program(data))} {state}</h1>"
        f"<p>pid {process.get('pid')} · <code>{html.escape(_command(data))}</code> · "
        f"python {html.escape(str(process.get('python')))} · started "
        f"{html.escape(str(process.get('started_at')))} · written "
        f"{html.escape(str(data.get('generated_at')))}</p></header><main>"
        f'<p class="summary">{html.escape(summary)}</p>'
        f'<h2>Suspects</h2><div id="suspects">{cards}</div>'
        f'<h2>Over time</h2><div id="charts">{figures}</div>'
        f"{_others(data, base)}"
        f"<h2>Text summary</h2><details><summary>as printed by <code>leakagent report"
        f"</code></summary><pre>{html.escape(text)}</pre></details>"
        "</main></body></html>\n"
    )


def write_html(data: dict[str, Any], path: str, text: str) -> None:
    """Write the page, owner-only (0600) like the JSON report."""
    encoded = page(data, text).encode("utf-8")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)  # an existing file keeps its mode otherwise
        view = memoryview(encoded)
        while view:
            view = view[os.write(fd, view) :]
    finally:
        os.close(fd)
