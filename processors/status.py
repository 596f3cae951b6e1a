"""`pipepulse status`: the latest per-component statistics as a table a person can read at a glance."""

from __future__ import annotations

import time
from typing import Any, Mapping, Sequence

from schemas.names import PIPELINE_FIELD

COLUMNS = ("component", "state", "ops", "rate/s", "in progress", "errors", "p50 ms", "p99 ms", "cache hit", "late", "window end")


def _number(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def rows(latest: Mapping[str, Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One dict per component (and the pipeline) from the `latest:stats` table's values, decoded."""
    result = []
    for field, views in sorted(latest.items(), key=lambda item: (item[0] == PIPELINE_FIELD, item[0])):
        (view,) = views.values()  # one view per field: the fixed window
        if field == PIPELINE_FIELD:
            result.append({"component": "(pipeline)", "state": "", "end_s": view["end_s"], **view["pipeline"]})
        else:
            result.append(
                {"component": field, "state": "stale" if view["stale"] else view["state"], "late_events_total": view["late_events_total"], "in_progress": view.get("in_progress", {}), **view.get("stats", {})}
            )
    return result


def table(latest: Mapping[str, Mapping[str, Any]]) -> str:
    lines = [COLUMNS]
    for row in rows(latest):
        latency = row.get("latency_ms", {})
        lines.append(
            (
                row["component"],
                row["state"],
                str(row.get("count", "-")),
                _number(row.get("rate_per_s")),
                str(row.get("in_progress", {}).get("running", "-")),
                _percent(row.get("error_rate")),
                _number(latency.get("p50"), 3),
                _number(latency.get("p99"), 3),
                _percent(row.get("cache", {}).get("hit_rate")),
                str(row.get("late_events_total", "")),
                time.strftime("%H:%M:%S UTC", time.gmtime(row["end_s"])) if "end_s" in row else "",
            )
        )
    return aligned(lines)


def aligned(lines: Sequence[Sequence[str]]) -> str:
    """Rows of cells as left-aligned columns, the first row being the header."""
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(line, widths)).rstrip() for line in lines)


def health_summary(health: Mapping[str, Any]) -> str:
    """The score, its level and where its points came from, then each component's traffic light."""
    factors = ", ".join(f"{name} {part['points']:.1f}/{part['of']:g}" for name, part in health["factors"].items())
    deducted = sum(d["points"] for d in health["deductions"])
    lines = [f"health {health['score']:.0f}/100 ({health['level']}): {factors}" + (f", minus {deducted:g} for {len(health['deductions'])} firing alert(s)" if deducted else "")]
    moved = [f"{m['what']} {m['points']:+.1f}" for m in health.get("moved", []) if m["points"]]
    if moved:
        lines.append("moved: " + ", ".join(moved[:5]))
    lights = ", ".join(
        f"{name} {body['status']}" + (f" (impacted by {', '.join(c['component'] for c in body['impacted_by'])})" if body.get("impacted_by") else "")
        for name, body in sorted(health["components"].items())
    )
    if lights:
        lines.append(f"components: {lights}")
    return "\n".join(lines)
