"""The report as one self-contained HTML page: tables and plotly charts that open offline.

plotly.js comes inline from the plotly wheel (no CDN). Names in the log are untrusted, so
every one is HTML-escaped, in the tables and in chart labels alike (plotly reads labels as
HTML-like markup); the charts travel as JSON in a data block with `<`, `>` and `&` escaped,
so no name can close it; and a Content-Security-Policy runs only the two inline scripts, by
their hashes (no 'unsafe-inline', no 'unsafe-eval' for scripts).
"""

from __future__ import annotations

import base64
import functools
import hashlib
import html
import time
from typing import Any, Iterable, Mapping, Sequence

import plotly.graph_objects as go
from plotly.offline import get_plotlyjs

SEVERITY_COLORS = {"warning": "#e6a700", "error": "#e45756", "critical": "#8b0000"}
RENDER_SCRIPT = """
const charts = JSON.parse(document.getElementById("pp-charts").textContent);
for (const chart of charts) {
  const div = document.createElement("div");
  div.className = "chart";
  document.getElementById("charts").appendChild(div);
  Plotly.newPlot(div, chart.data, chart.layout, {responsive: true, displaylogo: false});
}
"""
STYLE = """
body { font: 14px system-ui, sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; }
th, td { border: 1px solid #ddd; padding: 3px 8px; text-align: right; }
th:first-child, td:first-child, td.text { text-align: left; }
.chart { height: 360px; margin-bottom: 1em; }
.worsening { color: #b00020; } .improving { color: #1b7f3b; }
"""


def render_html(report: Mapping[str, Any]) -> str:
    """The page for a report document (processors.reporting.build_report)."""
    plotly_js = get_plotlyjs()
    if "</script" in plotly_js.lower():
        raise ValueError("this plotly.js bundle contains </script and cannot be inlined")
    meta = report["metadata"]
    title = f"pipepulse report: {meta['prefix']}, {_clock(meta['start_s'])} to {_clock(meta['until_s'])} UTC"
    policy = page_policy()
    body = "\n".join([f"<h1>{_e(title)}</h1>", _overview(report), '<div id="charts"></div>', *_sections(report)])
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n"
        f'<meta http-equiv="Content-Security-Policy" content="{_e(policy)}">\n'
        f"<title>{_e(title)}</title>\n<style>{STYLE}</style>\n"
        f"<script>{plotly_js}</script>\n</head><body>\n{body}\n"
        f'<script type="application/json" id="pp-charts">{script_json(_charts(report))}</script>\n'
        f"<script>{RENDER_SCRIPT}</script>\n</body></html>\n"
    )


@functools.cache
def page_policy() -> str:
    """The page's Content-Security-Policy; a server sending the page must send this one (policies intersect)."""
    # plotly adds its own style rules at run time, so styles stay inline-able; scripts are pinned by hash.
    return (
        f"default-src 'none'; script-src {_hash(get_plotlyjs())} {_hash(RENDER_SCRIPT)}; style-src 'unsafe-inline'; "
        "img-src data: blob:; font-src data:; base-uri 'none'; form-action 'none'; object-src 'none'"
    )


def script_json(text: str) -> str:
    """JSON text safe inside a <script> element: `<`, `>` and `&` as \\u escapes (they occur only inside strings)."""
    return text.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")


def _hash(script: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(script.encode()).digest()).decode() + "'"


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _value(value: object) -> str:
    return "-" if value is None else _e(value)


def _clock(at_s: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(at_s))


def _number(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.2f}%"


def _table(headers: Sequence[str], rows: Iterable[Sequence[str]], text_columns: int = 1) -> str:
    """Cells are already escaped text; the first `text_columns` align left."""
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    lines = ["<tr>" + "".join(f'<td class="text">{c}</td>' if i < text_columns else f"<td>{c}</td>" for i, c in enumerate(row)) + "</tr>" for row in rows]
    return f"<table><tr>{head}</tr>{''.join(lines) or '<tr><td>none</td></tr>'}</table>"


# -- tables


def _overview(report: Mapping[str, Any]) -> str:
    meta = report["metadata"]
    read = ", ".join(f"{_e(short)} {c['in_period']} of {c['entries']}" + (f" ({c['unreadable']} unreadable)" if c["unreadable"] else "") for short, c in meta["generated_from"].items())
    windows = ", ".join(f"{count} of {_e(size)}" for size, count in sorted(meta["windows"].items())) or "none"
    return f"<p>Entries in the period, of those read: {read}. Statistics windows: {windows}.</p>"


def _sections(report: Mapping[str, Any]) -> list[str]:
    summary, alerts, health, actions = report["summary"], report["alerts"], report["health"], report["actions"]
    named = [("(pipeline)", summary["pipeline"])] + sorted(summary["components"].items())
    trends = [("(pipeline)", report["trends"]["pipeline"])] + sorted(report["trends"]["components"].items())
    return [
        "<h2>Summary</h2>",
        _table(
            ("component", "operations", "rate/s", "error rate", "p50 ms (median / max)", "p95 ms", "p99 ms", "cache hit rate", "efficiency", "counters"),
            [(_e(name), f"{s['operations']:,}", _number(s["rate_per_s"], 2), _percent(s["error_rate"]), *(_spread(s["latency_ms"][q]) for q in ("p50", "p95", "p99")),
              _percent(s["cache"]["hit_rate"]), _number(s["efficiency_mean"]), _e(", ".join(f"{k} {v:,.0f}" for k, v in sorted(s["counters"].items()))))
             for name, s in named],
        ),  # fmt: skip
        f"<p>{_e(summary['method'])}</p>",
        "<h2>Trends</h2>",
        _table(
            ("component", "metric", "first third", "last third", "slope per hour", "direction"),
            [(_e(name), _e(metric), _number(t["first_third_mean"], 4), _number(t["last_third_mean"], 4), _number(t["slope_per_hour"], 4), f'<span class="{_e(t["direction"])}">{_e(t["direction"])}</span>')
             for name, body in trends for metric, t in sorted(body.items())],
            text_columns=2,
        ),  # fmt: skip
        "<h2>Alerts</h2>",
        f"<p>{alerts['episodes_started']} firing episode(s) started in the period; {alerts['resolved_episodes']} resolved, "
        f"mean time to resolve {_number(alerts['mean_time_to_resolve_s'])} s.</p>",
        _table(("rule", "warning", "error", "critical"), [(_e(rule), *(str(counts.get(s, 0)) for s in ("warning", "error", "critical"))) for rule, counts in sorted(alerts["by_rule"].items())]),
        "<h3>Active at the end of the period</h3>",
        _table(("severity", "state", "rule", "component", "since (UTC)", "message"), [(_e(a["severity"]), _e(a["state"]), _e(a["rule"]), _e(a["component"]), _clock(a["since_s"]) if a["since_s"] else "-", _e(a["message"])) for a in alerts["active_at_until"]], text_columns=6),
        f"<h3>Firing episodes ({alerts['episodes_total']}, newest {len(alerts['episodes'])} listed)</h3>",
        _table(("rule", "component", "severity", "started (UTC)", "duration s", "ongoing"), [(_e(e["rule"]), _e(e["component"]), _e(e["severity"]), _clock(e["started_s"]), _number(e["duration_s"]), "yes" if e["ongoing"] else "") for e in alerts["episodes"]], text_columns=3),
        "<h2>Health</h2>",
        _table(
            ("series", "min", "mean (time-weighted)", "max", "time per level or status (s)"),
            [(_e(name), _number(h["min"]), _number(h["mean"]), _number(h["max"]), _e(", ".join(f"{k} {v:,.0f}" for k, v in sorted(h["time_s"].items()))))
             for name, h in [("(pipeline)", health["pipeline"]), *sorted(health["components"].items())]],
        ),  # fmt: skip
        "<h2>Recommendations</h2>",
        _table(
            ("component", "kind", "count", "latest: current -> proposed", "latest reason"),
            [(_e(component), _e(kind), str(entry["count"]), f"{_value(entry['latest']['current'])} -&gt; {_value(entry['latest']['proposed'])}", _e(entry["latest"]["reason"]))
             for component, kinds in sorted(report["recommendations"]["by_component"].items()) for kind, entry in sorted(kinds.items())],
            text_columns=2,
        ),  # fmt: skip
        "<h2>Optimizer actions</h2>",
        _table(("decision", "count"), [(_e(d), str(n)) for d, n in sorted(actions["by_decision"].items())]),
        _table(
            ("at (UTC)", "decision", "component", "setting", "old -> new", "reason"),
            [(_clock(a["at_s"]), _e(a["decision"]), _e(a["component"]), _e(a["setting"]), f"{_value(a['old_value'])} -&gt; {_value(a['new_value'])}", _e(a["reason"])) for a in actions["changes"]],
            text_columns=6,
        ),
    ]


def _spread(latency: Mapping[str, float] | None) -> str:
    return "-" if latency is None else f"{latency['median']:,.2f} / {latency['max']:,.2f}"


# -- charts


def _charts(report: Mapping[str, Any]) -> str:
    """A JSON list of plotly figures (data and layout), names escaped as plotly renders them as markup."""
    series = report["series"]
    times = [_clock(t) for t in series["t_s"]]
    named = [("(pipeline)", series["pipeline"]), *sorted(series["components"].items())]
    health = go.Figure(go.Scatter(x=[_clock(t) for t in series["health"]["t_s"]], y=series["health"]["score"], mode="lines", name="health score"))
    health.update_yaxes(range=[0, 100])
    figures = [
        _layout(health, "Health score (pipeline)"),
        *(
            _layout(go.Figure([go.Scatter(x=times, y=values[metric], mode="lines", name=_e(name)) for name, values in named]), title)
            for metric, title in (("throughput_per_s", "Operations per second"), ("latency_p95_ms", "p95 latency (ms)"), ("error_rate", "Error rate"))
        ),
        _layout(_timeline(report["alerts"]["episodes"], report["metadata"]["until_s"]), "Alert firing episodes"),
    ]
    return "[" + ",".join(figure.to_json() for figure in figures) + "]"


def _timeline(episodes: Sequence[Mapping[str, Any]], until_s: float) -> go.Figure:
    figure = go.Figure()
    for severity, color in SEVERITY_COLORS.items():
        chosen = [e for e in episodes if e["severity"] == severity]
        if chosen:
            figure.add_trace(
                go.Bar(
                    orientation="h", name=severity, marker_color=color,
                    base=[_clock(e["started_s"]) for e in chosen],
                    x=[1000 * ((e["ended_s"] if e["ended_s"] is not None else until_s) - e["started_s"]) for e in chosen],
                    y=[_e(f"{e['rule']} · {e['component'] or 'pipeline'}") for e in chosen],
                )
            )  # fmt: skip
    figure.update_xaxes(type="date")
    return figure


def _layout(figure: go.Figure, title: str) -> go.Figure:
    figure.update_layout(title=_e(title), template="plotly_white", margin={"l": 60, "r": 20, "t": 50, "b": 40}, xaxis_title="time (UTC)")
    return figure
