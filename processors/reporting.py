"""The period report: what a pipeline did over a period, built from its derived streams alone.

`build_report` takes the entries already read from each derived stream (fields as text, as
XRANGE returns them) and selects them by their own event time, never by entry id (server
time) or the wall clock: the same log always gives the same report, a replay's included.
An entry that cannot be read is counted in `metadata.generated_from`, never fatal: one bad
entry should not cost a day's report.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import asdict
from typing import Any, Final, Mapping, Sequence

import numpy as np

from schemas.alerts import SEVERITIES, AlertEvent
from schemas.control import Action, Recommendation

from processors import metrics
from processors.report_input import PARSERS, Stats, T, Window, as_int, as_object, during, in_period, number, read_records, windows_between

REPORT_VERSION: Final = 1
STREAMS: Final = ("stats", "stats_1m", "alerts", "health", "forecasts", "recommendations", "actions")
# Trend metrics, named as in alert rules, with the sense of "better": +1 when higher is better.
TREND_METRICS: Final = {"throughput_per_s": 1, "error_rate": -1, "latency_p95_ms": -1, "cache_hit_rate": 1, "efficiency": 1}
# A change within 10 % of the larger value, or within a floor in the metric's own unit, is noise: flat.
FLAT_SHARE: Final = 0.10
FLAT_FLOOR: Final = {"throughput_per_s": 0.1, "error_rate": 0.005, "latency_p95_ms": 1.0, "cache_hit_rate": 0.01, "efficiency": 1.0}
CHART_METRICS: Final = ("throughput_per_s", "latency_p95_ms", "error_rate")
QUANTILES: Final = ("p50", "p95", "p99")
# Health comes at every window close (10 s): a longer silence than this is the monitor being down, counted as no data.
HEALTH_HOLD_MAX_S: Final = 60.0
MAX_CHART_POINTS: Final = 720  # per series: a day at 2-minute resolution keeps the HTML light
MAX_LISTED: Final = 500  # alert episodes and optimizer changes listed (the newest); their totals stay exact
SUMMARY_METHOD: Final = (
    "Totals over the statistics windows ending in the period (10 s windows; 1 m roll-ups where the 10 s history "
    "was trimmed). rate_per_s is operations over the seconds those windows cover; error and cache hit rates are "
    "ratios of totals; efficiency_mean is the operation-weighted mean of window scores. Percentiles do not add up "
    "across windows, so each latency percentile is given as the median and the max of its window values."
)


def build_report(entries: Mapping[str, Sequence[Mapping[str, str]]], *, prefix: str, since_s: float, until_s: float) -> dict[str, Any]:
    """The report of the period [until_s - since_s, until_s] (`since_s` is its length) from each stream's entries.

    Instants (alerts, health, advice, actions) count when they fall in the period; windows when
    they end in it after its start, so that no window reaches back before the period. Alert
    episodes and the health in force at the start are rebuilt from the entries before it.
    """
    if not (math.isfinite(since_s) and since_s > 0 and math.isfinite(until_s)):
        raise ValueError(f"the period needs a positive length and a finite end, got since_s={since_s}, until_s={until_s}")
    start_s = until_s - since_s
    read = {short: read_records(entries.get(short, ()), PARSERS[short]) for short in STREAMS}
    windows = windows_between(read["stats"][0], read["stats_1m"][0], start_s, until_s)
    health = read["health"][0]
    forecasts = during(read["forecasts"][0], start_s, until_s)
    names = sorted({name for window in windows for name in window.components})
    scopes: dict[str, list[tuple[float, float, Stats]]] = {name: [(w.end_s, w.window_s, w.components[name]) for w in windows if name in w.components] for name in names}
    pipeline = [(w.end_s, w.window_s, w.pipeline) for w in windows]
    return {
        "metadata": {
            "version": REPORT_VERSION,
            "prefix": prefix,
            "since_s": since_s,
            "start_s": start_s,
            "until_s": until_s,
            "generated_from": {short: {"entries": len(entries.get(short, ())), "in_period": in_period(short, read[short][0], start_s, until_s), "unreadable": read[short][1]} for short in STREAMS},
            "windows": dict(Counter(f"{w.window_s:g}s" for w in windows)),
        },
        "summary": {"method": SUMMARY_METHOD, "pipeline": _summary(pipeline), "components": {name: _summary(points) for name, points in scopes.items()}},
        "trends": {"pipeline": _trends(pipeline), "components": {name: _trends(points) for name, points in scopes.items()}},
        "alerts": _alerts([event for _, event in read["alerts"][0]], start_s, until_s),
        "health": _health(health, start_s, until_s),
        "recommendations": _recommendations([r for _, r in during(read["recommendations"][0], start_s, until_s)]),
        "actions": _actions([a for _, a in during(read["actions"][0], start_s, until_s)]),
        "forecasts": {"at_s": forecasts[-1][0], "series": forecasts[-1][1]} if forecasts else None,
        "series": _series(windows, names, during(health, start_s, until_s)),
    }


def direction(metric: str, first: float, last: float) -> str:
    """improving, worsening or flat: the change from the first third to the last, against the metric's sense of better."""
    change = last - first
    if abs(change) <= max(FLAT_SHARE * max(abs(first), abs(last)), FLAT_FLOOR[metric]):
        return "flat"
    return "improving" if change * TREND_METRICS[metric] > 0 else "worsening"


def newest_window_end_s(entries: Mapping[str, Sequence[Mapping[str, str]]]) -> float | None:
    """The default end of a report: the newest statistics window in the log (10 s, else the 1 m roll-ups), by its `end_s` field alone."""
    for short in ("stats", "stats_1m"):
        records, _ = read_records(entries.get(short, ()), lambda fields: (float(fields["end_s"]), None))
        if records:
            return max(at_s for at_s, _ in records)
    return None


def _metric(metric: str, stats: Stats) -> float | None:
    """A metric by its rule name (processors.metrics); a malformed document reads as no data."""
    try:
        return number(metrics.reading(metric, stats, {})[0])
    except (AttributeError, TypeError):
        return None


# -- statistics


def _summary(points: Sequence[tuple[float, float, Stats]]) -> dict[str, Any]:
    operations = errors = hits = misses = efficiency_operations = 0
    covered_s = weighted_efficiency = 0.0
    counters: dict[str, float] = {}
    errors_by_type: dict[str, int] = {}
    latency: dict[str, list[float]] = {q: [] for q in QUANTILES}
    for _, window_s, stats in points:
        count, cache = as_int(stats.get("count")), as_object(stats.get("cache"))
        operations, errors, covered_s = operations + count, errors + as_int(stats.get("errors")), covered_s + window_s
        hits, misses = hits + as_int(cache.get("hits")), misses + as_int(cache.get("misses"))
        for name, body in as_object(stats.get("counters")).items():
            counters[name] = counters.get(name, 0.0) + (number(as_object(body).get("total")) or 0.0)
        for name, value in as_object(stats.get("errors_by_type")).items():
            errors_by_type[name] = errors_by_type.get(name, 0) + as_int(value)
        for q in QUANTILES:
            value = number(as_object(stats.get("latency_ms")).get(q))
            if value is not None:
                latency[q].append(value)
        efficiency = _metric("efficiency", stats)
        if efficiency is not None and count:
            weighted_efficiency, efficiency_operations = weighted_efficiency + efficiency * count, efficiency_operations + count
    return {
        "windows": len(points),
        "covered_s": covered_s,
        "operations": operations,
        "rate_per_s": operations / covered_s if covered_s else None,
        "errors": errors,
        "error_rate": errors / operations if operations else None,
        "errors_by_type": errors_by_type,
        "latency_ms": {q: {"median": float(np.median(values)), "max": max(values)} if values else None for q, values in latency.items()},
        "cache": {"hits": hits, "misses": misses, "hit_rate": hits / (hits + misses) if hits + misses else None},
        "efficiency_mean": weighted_efficiency / efficiency_operations if efficiency_operations else None,
        "counters": counters,
    }


def _trends(points: Sequence[tuple[float, float, Stats]]) -> dict[str, Any]:
    return {metric: _trend(metric, [(end_s, v) for end_s, _, stats in points if (v := _metric(metric, stats)) is not None]) for metric in TREND_METRICS}


def _trend(metric: str, points: Sequence[tuple[float, float]]) -> dict[str, Any]:
    """First and last third of the series' own time span, and the least-squares slope (per hour)."""
    if len(points) < 3 or points[0][0] == points[-1][0]:
        return {"points": len(points), "first_third_mean": None, "last_third_mean": None, "slope_per_hour": None, "direction": "insufficient_data"}
    times = np.array([t for t, _ in points])
    values = np.array([v for _, v in points])
    third_s = (times[-1] - times[0]) / 3
    first = float(values[times <= times[0] + third_s].mean())
    last = float(values[times >= times[-1] - third_s].mean())
    slope = float(np.polyfit((times - times[0]) / 3600.0, values, 1)[0])
    return {"points": len(points), "first_third_mean": first, "last_third_mean": last, "slope_per_hour": slope, "direction": direction(metric, first, last)}


# -- alerts, health, advice and actions


def _alerts(events: Sequence[AlertEvent], start_s: float, until_s: float) -> dict[str, Any]:
    """Firing episodes (firing or flapping until resolved) rebuilt from the whole history up to until_s."""
    history = sorted((e for e in events if e.at_s <= until_s), key=lambda e: e.at_s)
    episodes: list[dict[str, Any]] = []
    open_episodes: dict[str, dict[str, Any]] = {}
    last: dict[str, AlertEvent] = {}
    for event in history:
        last[event.fingerprint] = event
        episode = open_episodes.get(event.fingerprint)
        if event.state in ("firing", "flapping"):
            if episode is None:
                episode = open_episodes[event.fingerprint] = _episode(event)
            if SEVERITIES.index(event.severity) > SEVERITIES.index(episode["severity"]):
                episode["severity"] = event.severity
        elif event.state == "resolved" and (episode is not None or (event.transition == "resolved" and event.fired_at_s is not None)):
            episode = open_episodes.pop(event.fingerprint, None) or _episode(event)  # else its firing was trimmed from the stream
            episode["ended_s"] = event.resolved_at_s if event.resolved_at_s is not None else event.at_s
            episodes.append(episode)
    episodes.extend(open_episodes.values())
    episodes = sorted((e for e in episodes if e["ended_s"] is None or e["ended_s"] >= start_s), key=lambda e: (e["started_s"], e["fingerprint"]))
    for episode in episodes:
        episode["ongoing"] = episode["ended_s"] is None
        episode["duration_s"] = (until_s if episode["ongoing"] else episode["ended_s"]) - episode["started_s"]
    started = [e for e in episodes if e["started_s"] >= start_s]
    by_rule: dict[str, Counter[str]] = {}
    for episode in started:
        by_rule.setdefault(episode["rule"], Counter())[episode["severity"]] += 1
    resolved = [e["duration_s"] for e in episodes if not e["ongoing"]]
    active = [e for e in last.values() if e.state in ("pending", "firing", "flapping")]
    return {
        "episodes_started": len(started),
        "by_rule": {rule: dict(counts) for rule, counts in by_rule.items()},
        "by_severity": dict(Counter(e["severity"] for e in started)),
        "transitions": dict(Counter(e.transition for e in history if e.at_s >= start_s)),
        "episodes_total": len(episodes),
        "episodes": episodes[-MAX_LISTED:],
        "resolved_episodes": len(resolved),
        "mean_time_to_resolve_s": sum(resolved) / len(resolved) if resolved else None,
        "active_at_until": [
            {"fingerprint": e.fingerprint, "rule": e.rule, "component": e.component, "state": e.state, "severity": e.severity, "since_s": e.fired_at_s or e.active_since_s, "message": e.message, "acked_by": e.acked_by}
            for e in sorted(active, key=lambda e: (-SEVERITIES.index(e.severity), e.fired_at_s or e.active_since_s or 0.0, e.fingerprint))
        ],
    }


def _episode(event: AlertEvent) -> dict[str, Any]:
    started_s = event.fired_at_s if event.fired_at_s is not None else event.at_s
    return {"fingerprint": event.fingerprint, "rule": event.rule, "component": event.component, "labels": dict(event.labels), "severity": event.severity, "started_s": started_s, "ended_s": None}


def _health(snapshots: Sequence[tuple[float, dict[str, Any]]], start_s: float, until_s: float) -> dict[str, Any]:
    """Scores and time per level, each snapshot holding until the next (at most HEALTH_HOLD_MAX_S); the one in force at the start counts."""
    ordered = sorted(snapshots, key=lambda s: s[0])
    within = during(ordered, start_s, until_s)
    timeline = [s for s in ordered if s[0] < start_s][-1:] + within
    held: list[tuple[float, dict[str, Any]]] = []
    for i, (at_s, body) in enumerate(timeline):
        end_s = min(timeline[i + 1][0] if i + 1 < len(timeline) else until_s, at_s + HEALTH_HOLD_MAX_S, until_s)
        seconds = max(0.0, end_s - max(at_s, start_s))
        if seconds > 0 or at_s >= start_s:
            held.append((seconds, body))
    names = sorted({name for _, body in held for name in as_object(body.get("components"))})
    return {
        "snapshots": len(within),
        "pipeline": _scores([(s, number(body.get("score")), str(body.get("level"))) for s, body in held], until_s - start_s),
        "components": {
            name: _scores([(s, number(c.get("score")), str(c.get("status"))) for s, body in held if isinstance(c := as_object(body.get("components")).get(name), dict)], until_s - start_s)
            for name in names
        },
    }


def _scores(held: Sequence[tuple[float, float | None, str]], period_s: float) -> dict[str, Any]:
    scores = [score for _, score, _ in held if score is not None]
    weight_s = sum(seconds for seconds, score, _ in held if score is not None)
    time_s: dict[str, float] = {}
    for seconds, _, category in held:
        time_s[category] = time_s.get(category, 0.0) + seconds
    time_s["no_data"] = max(0.0, period_s - sum(time_s.values()))
    return {
        "min": min(scores, default=None),
        "max": max(scores, default=None),
        "mean": sum(seconds * score for seconds, score, _ in held if score is not None) / weight_s if weight_s else None,
        "time_s": time_s,
    }


def _recommendations(records: Sequence[Recommendation]) -> dict[str, Any]:
    by_component: dict[str, dict[str, dict[str, Any]]] = {}
    for record in records:
        entry = by_component.setdefault(record.component, {}).setdefault(record.kind, {"count": 0})
        entry["count"] += 1
        entry["latest"] = asdict(record)
    return {"total": len(records), "by_kind": dict(Counter(r.kind for r in records)), "by_component": by_component}


def _actions(records: Sequence[Action]) -> dict[str, Any]:
    by_component: dict[str, Counter[str]] = {}
    for record in records:
        if record.component:  # mode changes concern no component
            by_component.setdefault(record.component, Counter())[record.decision] += 1
    changes = [asdict(a) for a in records if a.decision in ("applied", "rolled_back")]
    return {
        "total": len(records),
        "by_decision": dict(Counter(a.decision for a in records)),
        "by_component": {name: dict(counts) for name, counts in by_component.items()},
        "changes_total": len(changes),
        "changes": changes[-MAX_LISTED:],
    }


# -- chart series


def _series(windows: Sequence[Window], names: Sequence[str], health: Sequence[tuple[float, dict[str, Any]]]) -> dict[str, Any]:
    """Chart data on the windows' times, each point the mean of `step` consecutive windows so as to stay under MAX_CHART_POINTS."""
    step = max(1, math.ceil(len(windows) / MAX_CHART_POINTS))
    health_step = max(1, math.ceil(len(health) / MAX_CHART_POINTS))

    def columns(values: Sequence[Stats | None]) -> dict[str, list[float | None]]:
        return {metric: _thin([None if stats is None else _metric(metric, stats) for stats in values], step) for metric in CHART_METRICS}

    return {
        "method": "a point is the mean of `step` consecutive windows (health: snapshots), at the time of the last of them",
        "step": step,
        "t_s": [run[-1] for run in _runs([w.end_s for w in windows], step)],
        "pipeline": columns([w.pipeline for w in windows]),
        "components": {name: columns([w.components.get(name) for w in windows]) for name in names},
        "health": {
            "step": health_step,
            "t_s": [run[-1] for run in _runs([at_s for at_s, _ in health], health_step)],
            "score": _thin([number(body.get("score")) for _, body in health], health_step),
        },
    }


def _runs(values: Sequence[T], step: int) -> list[Sequence[T]]:
    return [values[i : i + step] for i in range(0, len(values), step)]


def _thin(values: Sequence[float | None], step: int) -> list[float | None]:
    runs = [[v for v in run if v is not None] for run in _runs(values, step)]
    return [sum(run) / len(run) if run else None for run in runs]
