"""The period report over a known 30-minute run, its HTML page, and the command against a real server.

The run (T0 to UNTIL): `parser` at 50 ops/s whose cache hit rate goes from 60 % to 90 % at
minute 10 while its p95 latency rises 1 ms a minute; `extractor` at 20 ops/s whose errors go
1 % -> 2 % (30 % from 12:00 to 15:00, the alert episode) -> 5 %; health 90, 55 during the
episode, with a 100 s gap at 20:00. Entries outside the period are loud (a million operations,
scores of 10) so that any leak shows.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
import redis
from click.testing import CliRunner
from plotly.offline import get_plotlyjs

from schemas.alerts import AlertEvent, fingerprint
from schemas.control import Action, Recommendation, encode

from processors.config import Config
from processors.contract import to_json
from processors.embedded import EmbeddedServer
from processors.monitor import MonitorProcessor, MonitorSettings
from processors.report_cli import report
from processors.report_html import render_html, script_json
from processors.reporting import STREAMS, build_report, direction
from processors.rules import load_rules

from tests.processors.helpers import T0, batch, items, op, stream_outputs, tick

UNTIL = T0 + 1800
HOSTILE = "</script><script>alert(1)</script>"
Entries = dict[str, list[dict[str, str]]]


def window_stats(count: int, errors: int = 0, p95_ms: float = 20.0, hits: int = 0, misses: int = 0, counters: dict[str, float] | None = None, window_s: float = 10.0) -> dict[str, Any]:
    """A statistics body as processors.report.operation_stats renders it."""
    success = (count - errors) / count
    hit_rate = hits / (hits + misses) if hits + misses else None
    return {
        "count": count, "rate_per_s": count / window_s, "errors": errors, "errors_by_type": {"Throttled": errors} if errors else {},
        "error_rate": errors / count, "success_rate": success, "apdex": 1.0,
        "latency_ms": {"mean": p95_ms / 2, "min": 0.5, "max": 2 * p95_ms, "p50": p95_ms / 2, "p90": 0.9 * p95_ms, "p95": p95_ms, "p99": 1.5 * p95_ms},
        "cache": {"hits": hits, "misses": misses, "hit_rate": hit_rate},
        "counters": {name: {"total": total, "rate_per_s": total / window_s} for name, total in (counters or {}).items()},
        "efficiency_score": 100 * success * (1.0 if hit_rate is None else 0.5 + 0.5 * hit_rate),
    }  # fmt: skip


def merged(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """The arguments of window_stats for several windows or components together: sums, and the worst p95."""
    counters: dict[str, float] = {}
    for part in parts:
        for name, total in part.get("counters", {}).items():
            counters[name] = counters.get(name, 0) + total
    sums = {key: sum(p.get(key, 0) for p in parts) for key in ("count", "errors", "hits", "misses")}
    return {**sums, "p95_ms": max(p.get("p95_ms", 20.0) for p in parts), "counters": counters}


def components_at(end_s: float, hostile: bool) -> dict[str, dict[str, Any]]:
    t = end_s - T0
    hits = 300 if t <= 600 else 450
    error_share = 0.01 if t <= 600 else 0.30 if 720 < t <= 900 else 0.02 if t <= 1200 else 0.05
    parts = {
        "parser": {"count": 500, "p95_ms": 10 + t / 60, "hits": hits, "misses": 500 - hits, "counters": {"files_processed": 10}},
        "extractor": {"count": 200, "errors": round(200 * error_share), "counters": {"calls_detected": 100}},
    }
    if hostile:
        parts[HOSTILE] = {"count": 10}
    if not 0 < t <= 1800:
        parts["parser"]["count"] = 1_000_000  # outside the period: must never be counted
    return parts


def stats_body(end_s: float, parts: dict[str, dict[str, Any]], window_s: float) -> dict[str, Any]:
    components = {name: {"stale": False, "state": "running", "stats": window_stats(**kw, window_s=window_s)} for name, kw in parts.items()}
    return {"window_s": window_s, "start_s": end_s - window_s, "end_s": end_s, "pipeline": window_stats(**merged(list(parts.values())), window_s=window_s), "components": components, "hosts": {}}


def health_body(at_s: float, score: float, level: str, extractor: str = "healthy") -> dict[str, Any]:
    statuses = {"parser": "healthy", "extractor": extractor}
    return {"at_s": at_s, "score": score, "level": level, "factors": {}, "deductions": [], "moved": [], "components": {n: {"score": score, "level": level, "status": s} for n, s in statuses.items()}}


def alert(at_s: float, rule: str, component: str, transition: str, state: str, severity: str = "warning", fired_at_s: float | None = None, resolved_at_s: float | None = None, acked_by: str | None = None) -> dict[str, str]:
    labels = {"component": component}
    return AlertEvent(
        event_id=f"{at_s:.0f}-{rule}-{transition}", fingerprint=fingerprint(rule, labels), rule=rule, labels=labels, severity=severity, state=state,  # type: ignore[arg-type]
        transition=transition, value=0.3, threshold=0.05, message=f"{rule} on {component}", at_s=at_s, active_since_s=fired_at_s or at_s,
        fired_at_s=fired_at_s, resolved_at_s=resolved_at_s, acked_by=acked_by,
    ).to_fields()  # fmt: skip


def advice(rid: str, at_s: float, kind: str, component: str, setting: str, current: int, proposed: int) -> dict[str, str]:
    record = Recommendation(recommendation_id=rid, kind=kind, component=component, setting=setting, current=current, proposed=proposed, reason=f"{kind} at {at_s - T0:.0f}",
                            expected_effect="better", priority="medium", confidence=0.8, issued_at_s=at_s, expires_at_s=at_s + 60, evidence={"value": 0.6})  # fmt: skip
    return {"id": rid, "json": encode(record)}


def action(aid: str, at_s: float, decision: str, component: str = "", setting: str = "", old: int | None = None, new: int | None = None, rid: str | None = None) -> dict[str, str]:
    record = Action(action_id=aid, decision=decision, reason=f"{decision} {aid}", at_s=at_s, component=component, setting=setting, recommendation_id=rid, old_value=old, new_value=new)
    return {"id": aid, "json": encode(record)}


def scenario(*, hostile: bool = False, trimmed_until_s: float = -1.0) -> Entries:
    """The run's derived streams, with loud entries outside the period and one unreadable entry in some; 10 s windows up to `trimmed_until_s` are gone."""
    ends = [T0 + 10 * k for k in range(0, 182)]  # T0 (ends at the start: outside) .. UNTIL + 10 (outside)
    stats = [{"window": "10s", "end_s": str(e), "json": json.dumps(stats_body(e, components_at(e, hostile), 10.0))} for e in ends if e > trimmed_until_s]
    minutes = []
    for end_s in range(int(T0) + 60, int(UNTIL) + 1, 60):
        tens = [components_at(end_s - 10 * i, hostile) for i in range(6)]
        body = stats_body(end_s, {name: merged([t[name] for t in tens]) for name in tens[0]}, 60.0)
        minutes.append({"window": "1m", "end_s": str(end_s), "json": json.dumps({"1m": body, "5m": body, "15m": body})})
    snapshots = [(T0 - 100, 20.0, "critical"), (T0 - 5, 70.0, "good"), (T0 + 1810, 10.0, "critical")]
    snapshots += [(T0 + 10 * k, 55.0 if 720 <= 10 * k < 900 else 90.0, "warning" if 720 <= 10 * k < 900 else "excellent") for k in range(1, 181) if not 121 <= k <= 129]
    return {
        "stats": stats + [{"window": "10s", "end_s": "soon", "json": "{}"}],
        "stats_1m": minutes,
        "health": [{"at_s": str(at_s), "json": json.dumps(health_body(at_s, score, level, "critical" if score == 55.0 else "healthy"))} for at_s, score, level in snapshots],
        "alerts": [
            alert(T0 - 1000, "cpu_saturation", "parser", "firing", "firing", fired_at_s=T0 - 1000),
            alert(T0 - 900, "cpu_saturation", "parser", "resolved", "resolved", fired_at_s=T0 - 1000, resolved_at_s=T0 - 900),
            alert(T0 - 600, "memory_exhaustion_forecast", "parser", "firing", "firing", fired_at_s=T0 - 600),  # and nothing since
            alert(T0 - 300, "component_absent", "ghost", "firing", "firing", "critical", fired_at_s=T0 - 300),
            alert(T0 + 30, "min_cache_hit_rate", "parser", "firing", "firing", fired_at_s=T0 + 30),
            alert(T0 + 100, "component_absent", "ghost", "acked", "firing", "critical", fired_at_s=T0 - 300, acked_by="ana"),
            alert(T0 + 630, "min_cache_hit_rate", "parser", "resolved", "resolved", fired_at_s=T0 + 30, resolved_at_s=T0 + 630),
            alert(T0 + 720, "max_error_rate", "extractor", "firing", "firing", "error", fired_at_s=T0 + 720),
            alert(T0 + 730, "max_error_rate", "extractor", "severity_changed", "firing", "critical", fired_at_s=T0 + 720),
            alert(T0 + 900, "max_error_rate", "extractor", "resolved", "resolved", "critical", fired_at_s=T0 + 720, resolved_at_s=T0 + 900),
            alert(T0 + 1000, "min_efficiency", "parser", "pending", "pending"),
            alert(T0 + 1005, "min_efficiency", "parser", "dropped", "inactive"),
            alert(T0 + 1900, "max_memory", "parser", "firing", "firing", "critical", fired_at_s=T0 + 1900),
            {"id": "broken", "json": "{"},
        ],
        "forecasts": [{"end_s": str(e), "json": json.dumps({"parser": {"error_rate": {"best": "linear", "at": e}}})} for e in (T0 + 1200, T0 + 1800, T0 + 1860)],
        "recommendations": [
            advice("r0", T0 - 50, "grow_cache", "parser", "cache_size", 128, 256),
            advice("r1", T0 + 60, "grow_cache", "parser", "cache_size", 256, 512),
            advice("r2", T0 + 300, "grow_cache", "parser", "cache_size", 512, 540),
            advice("r3", T0 + 730, "lower_concurrency", "extractor", "concurrency", 2, 1),
        ],
        "actions": [
            action("a0", T0 - 10, "mode_changed"),
            action("a1", T0 + 61, "applied", "parser", "cache_size", 256, 512, "r1"),
            action("a2", T0 + 91, "verified", "parser", "cache_size", None, 512, "r1"),
            action("a3", T0 + 301, "skipped", "parser", "cache_size", rid="r2"),
            action("a4", T0 + 731, "applied", "extractor", "concurrency", 2, 1, "r3"),
            action("a5", T0 + 761, "rolled_back", "extractor", "concurrency", 1, 2, "r3"),
        ],
    }


@pytest.fixture(scope="module")
def built() -> dict[str, Any]:
    return build_report(scenario(), prefix="pp", since_s=1800, until_s=UNTIL)


def test_the_report_has_its_sections_and_is_deterministic_json(built: dict[str, Any]) -> None:
    assert set(built) == {"metadata", "summary", "trends", "alerts", "health", "recommendations", "actions", "forecasts", "series"}
    meta = built["metadata"]
    assert (meta["version"], meta["prefix"], meta["since_s"], meta["start_s"], meta["until_s"], meta["windows"]) == (1, "pp", 1800, T0, UNTIL, {"10s": 180})
    assert {short: counts["unreadable"] for short, counts in meta["generated_from"].items()} == {s: 1 if s in ("stats", "alerts") else 0 for s in STREAMS}
    assert meta["generated_from"]["stats"] == {"entries": 183, "in_period": 180, "unreadable": 1}  # the window ending at T0 is before the period
    assert meta["generated_from"]["health"]["in_period"] == 171
    assert isinstance(built["summary"]["method"], str) and "median and the max" in built["summary"]["method"]
    assert built["forecasts"] == {"at_s": UNTIL, "series": {"parser": {"error_rate": {"best": "linear", "at": UNTIL}}}}
    reversed_log = {short: list(reversed(entries)) for short, entries in scenario().items()}
    assert to_json(build_report(reversed_log, prefix="pp", since_s=1800, until_s=UNTIL)) == to_json(built)  # selected and ordered by event time


@pytest.mark.parametrize(
    "scope, path, expected",
    [
        ("parser", ("operations",), 180 * 500),
        ("parser", ("rate_per_s",), 50.0),
        ("parser", ("cache", "hit_rate"), (60 * 300 + 120 * 450) / (180 * 500)),
        ("parser", ("efficiency_mean",), 90.0),
        ("parser", ("latency_ms", "p95"), {"median": 10 + 90.5 / 6, "max": 40.0}),
        ("parser", ("counters",), {"files_processed": 1800}),
        ("extractor", ("errors",), 60 * 2 + 42 * 4 + 18 * 60 + 60 * 10),
        ("extractor", ("error_rate",), 1968 / 36000),
        ("extractor", ("errors_by_type",), {"Throttled": 1968}),
        ("extractor", ("efficiency_mean",), 100 * (1 - 1968 / 36000)),
        ("extractor", ("counters",), {"calls_detected": 18000}),
        ("pipeline", ("operations",), 180 * 700),
        ("pipeline", ("covered_s",), 1800.0),
    ],
)
def test_summary_totals_over_the_period(built: dict[str, Any], scope: str, path: tuple[str, ...], expected: Any) -> None:
    value = built["summary"]["pipeline"] if scope == "pipeline" else built["summary"]["components"][scope]
    for key in path:
        value = value[key]
    assert value == pytest.approx(expected)


@pytest.mark.parametrize(
    "component, metric, expected, slope_per_hour",
    [
        ("extractor", "error_rate", "worsening", None),
        ("parser", "cache_hit_rate", "improving", None),
        ("parser", "latency_p95_ms", "worsening", 60.0),
        ("parser", "throughput_per_s", "flat", 0.0),
        ("extractor", "latency_p95_ms", "flat", 0.0),
    ],
)
def test_trends_compare_the_first_and_last_thirds(built: dict[str, Any], component: str, metric: str, expected: str, slope_per_hour: float | None) -> None:
    trend = built["trends"]["components"][component][metric]
    assert (trend["direction"], trend["points"]) == (expected, 180)
    if slope_per_hour is not None:
        assert trend["slope_per_hour"] == pytest.approx(slope_per_hour, abs=1e-9)


@pytest.mark.parametrize(
    "metric, first, last, expected",
    [
        ("error_rate", 0.01, 0.05, "worsening"),
        ("error_rate", 0.05, 0.01, "improving"),
        ("error_rate", 0.010, 0.012, "flat"),  # under the 0.5-point floor
        ("cache_hit_rate", 0.6, 0.9, "improving"),
        ("latency_p95_ms", 100.0, 109.0, "flat"),  # within 10 %
        ("latency_p95_ms", 100.0, 120.0, "worsening"),
        ("throughput_per_s", 50.0, 30.0, "worsening"),
        ("efficiency", 90.0, 70.0, "worsening"),
    ],
)
def test_direction_follows_each_metrics_sense_of_better(metric: str, first: float, last: float, expected: str) -> None:
    assert direction(metric, first, last) == expected


def test_alert_counts_episodes_and_the_alerts_active_at_the_end(built: dict[str, Any]) -> None:
    alerts = built["alerts"]
    assert (alerts["episodes_started"], alerts["by_rule"], alerts["by_severity"]) == (2, {"max_error_rate": {"critical": 1}, "min_cache_hit_rate": {"warning": 1}}, {"critical": 1, "warning": 1})
    assert alerts["transitions"] == {"firing": 2, "severity_changed": 1, "resolved": 2, "acked": 1, "pending": 1, "dropped": 1}
    episodes = {(e["rule"], e["component"]): (e["started_s"] - T0, e["duration_s"], e["ongoing"], e["severity"]) for e in alerts["episodes"]}
    assert episodes == {
        ("component_absent", "ghost"): (-300, 2100, True, "critical"),  # began before the period, still firing at its end
        ("memory_exhaustion_forecast", "parser"): (-600, 2400, True, "warning"),  # known only from before the period
        ("min_cache_hit_rate", "parser"): (30, 600, False, "warning"),
        ("max_error_rate", "extractor"): (720, 180, False, "critical"),
    }
    assert (alerts["episodes_total"], alerts["resolved_episodes"], alerts["mean_time_to_resolve_s"]) == (4, 2, 390.0)
    active = [(a["rule"], a["component"], a["state"], a["acked_by"]) for a in alerts["active_at_until"]]
    assert active == [("component_absent", "ghost", "firing", "ana"), ("memory_exhaustion_forecast", "parser", "firing", None)]  # worst first


def test_health_scores_and_time_per_level(built: dict[str, Any]) -> None:
    health = built["health"]
    assert health["snapshots"] == 171
    pipeline = health["pipeline"]
    assert (pipeline["min"], pipeline["max"]) == (55.0, 90.0)
    assert pipeline["mean"] == pytest.approx((10 * 70 + 180 * 55 + 1570 * 90) / 1760)
    assert pipeline["time_s"] == pytest.approx({"good": 10, "warning": 180, "excellent": 1570, "no_data": 40})  # the 100 s gap: 60 s held, 40 s no data
    assert health["components"]["extractor"]["time_s"] == pytest.approx({"healthy": 1580, "critical": 180, "no_data": 40})


def test_recommendations_and_actions_in_the_period(built: dict[str, Any]) -> None:
    advice_ = built["recommendations"]
    assert (advice_["total"], advice_["by_kind"]) == (3, {"grow_cache": 2, "lower_concurrency": 1})
    latest = {(c, k): (e["count"], e["latest"]["recommendation_id"]) for c, kinds in advice_["by_component"].items() for k, e in kinds.items()}
    assert latest == {("parser", "grow_cache"): (2, "r2"), ("extractor", "lower_concurrency"): (1, "r3")}
    actions = built["actions"]
    assert actions["by_decision"] == {"applied": 2, "verified": 1, "skipped": 1, "rolled_back": 1}
    assert actions["by_component"] == {"parser": {"applied": 1, "verified": 1, "skipped": 1}, "extractor": {"applied": 1, "rolled_back": 1}}
    changes = [(c["decision"], c["component"], c["old_value"], c["new_value"], c["reason"]) for c in actions["changes"]]
    assert changes == [("applied", "parser", 256, 512, "applied a1"), ("applied", "extractor", 2, 1, "applied a4"), ("rolled_back", "extractor", 1, 2, "rolled_back a5")]


@pytest.mark.parametrize(
    "since_s, until_s, operations, episodes_started, actions",
    [
        (900, T0 + 900, 90 * 500, 2, 5),  # the first half: both episodes start in it, every action is taken
        (600, UNTIL, 60 * 500, 0, 0),  # the last 10 minutes: nothing fired, nothing acted
        (10, T0 + 10, 500, 0, 0),  # one window
    ],
)
def test_the_period_selects_entries_by_their_event_time(since_s: float, until_s: float, operations: int, episodes_started: int, actions: int) -> None:
    document = build_report(scenario(), prefix="pp", since_s=since_s, until_s=until_s)
    assert document["summary"]["components"]["parser"]["operations"] == operations
    assert (document["alerts"]["episodes_started"], document["actions"]["total"]) == (episodes_started, actions)


def test_one_minute_rollups_stand_in_for_trimmed_ten_second_windows() -> None:
    document = build_report(scenario(trimmed_until_s=T0 + 600), prefix="pp", since_s=1800, until_s=UNTIL)
    assert document["metadata"]["windows"] == {"10s": 120, "60s": 10}
    parser = document["summary"]["components"]["parser"]
    assert (parser["operations"], parser["covered_s"], parser["rate_per_s"]) == (180 * 500, 1800.0, 50.0)
    assert document["trends"]["components"]["parser"]["cache_hit_rate"]["direction"] == "improving"


def with_raw(fields: dict[str, str], key: str, raw: str) -> dict[str, str]:
    """The entry with one JSON value replaced by raw text (NaN, 1e999: what Python's json would read as non-finite)."""
    body = json.loads(fields["json"])
    body[key] = "RAW"
    return {**fields, "json": json.dumps(body).replace('"RAW"', raw)}


@pytest.mark.parametrize(
    "short, fields",
    [
        ("stats", {"end_s": str(T0 + 10), "json": '{"window_s": 10, "pipeline": {"count": NaN}, "components": {}}'}),
        ("stats", {"end_s": "nan", "json": json.dumps(stats_body(T0 + 10, {"parser": {"count": 1}}, 10.0))}),
        ("stats", {"end_s": str(T0 + 10), "json": '{"window_s": 10, "pipeline": {}, "components": ["parser"]}'}),
        ("stats", {"end_s": str(T0 + 10), "json": '{"window_s": 1e999, "pipeline": {}, "components": {}}'}),
        ("forecasts", {"end_s": str(T0 + 10), "json": '{"parser": {"error_rate": {"slope_per_s": 1e999}}}'}),
        ("health", {"at_s": str(T0 + 10), "json": "[90]"}),
        ("alerts", with_raw(alert(T0 + 10, "max_error_rate", "parser", "firing", "firing"), "fired_at_s", "1e999")),
        ("recommendations", with_raw(advice("r9", T0 + 10, "grow_cache", "parser", "cache_size", 256, 512), "current", "NaN")),
        ("actions", with_raw(action("a9", T0 + 10, "applied", "parser", "cache_size", 256, 512), "evidence", '{"before": -Infinity}')),
    ],
)
def test_an_unreadable_entry_is_counted_and_never_reaches_the_report(short: str, fields: dict[str, str]) -> None:
    document = build_report({short: [fields]}, prefix="pp", since_s=60, until_s=T0 + 60)
    assert document["metadata"]["generated_from"][short] == {"entries": 1, "in_period": 0, "unreadable": 1}
    to_json(document)  # raises on a NaN or an infinity


def test_a_period_without_length_is_refused() -> None:
    with pytest.raises(ValueError, match="positive length"):
        build_report({}, prefix="pp", since_s=0, until_s=UNTIL)


def test_chart_series_are_thinned_under_the_point_limit() -> None:
    ends = [T0 + 10 * k for k in range(1, 2001)]
    entries = {"stats": [{"end_s": str(e), "json": json.dumps(stats_body(e, {"parser": {"count": 10}}, 10.0))} for e in ends]}
    series = build_report(entries, prefix="pp", since_s=20_000, until_s=ends[-1])["series"]
    assert (series["step"], len(series["t_s"]), series["t_s"][0], series["t_s"][-1]) == (3, 667, T0 + 30, ends[-1])
    assert len(series["components"]["parser"]["throughput_per_s"]) == 667


def test_the_report_reads_what_the_monitor_writes() -> None:
    """A real fold: 3 minutes of parser traffic with 50 % errors from 60 s to 90 s."""
    log = []
    for second in range(180):
        rows = [op(T0 + second + i / 20, ok=not (60 <= second < 90 and i % 2), error_type="Throttled", hits=1, misses=int(i % 4 == 0)) for i in range(20)]
        log += [batch(rows, seq=second), tick(T0 + second + 0.99)]
    outputs = MonitorProcessor(MonitorSettings(rules=load_rules())).apply(items([*log, tick(T0 + 181)]))
    document = build_report({short: stream_outputs(outputs, short) for short in STREAMS}, prefix="pp", since_s=180, until_s=T0 + 180)
    assert all(c["unreadable"] == 0 and c["in_period"] > 0 for s, c in document["metadata"]["generated_from"].items() if s in ("stats", "alerts", "health"))
    parser = document["summary"]["components"]["parser"]
    assert (parser["operations"], parser["errors"], parser["cache"]["hit_rate"]) == (3600, 300, 0.8)
    (episode,) = [e for e in document["alerts"]["episodes"] if e["rule"] == "max_error_rate"]
    assert not episode["ongoing"] and 30 <= episode["duration_s"] <= 45  # the fault's 30 s, plus the sliding 10 s clearing
    assert document["health"]["pipeline"]["min"] < document["health"]["pipeline"]["max"]


@pytest.mark.parametrize("text", ['{"name": "</script><script>alert(1)</script>"}', '{"a": "<!--", "b": "]]>", "c": "&amp;"}'])
def test_json_in_a_script_element_carries_no_markup_and_decodes_the_same(text: str) -> None:
    safe = script_json(text)
    assert not {"<", ">", "&"} & set(safe)
    assert json.loads(safe) == json.loads(text)


class Page(HTMLParser):
    """The scripts (attributes and bodies), the CSP and the visible text of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.scripts: list[tuple[dict[str, str | None], str]] = []
        self.text: list[str] = []
        self.policy = ""
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "script":
            self.scripts.append((dict(attrs), ""))
            self._in_script = True
        elif tag == "meta" and dict(attrs).get("http-equiv") == "Content-Security-Policy":
            self.policy = dict(attrs)["content"] or ""

    def handle_endtag(self, tag: str) -> None:
        self._in_script = self._in_script and tag != "script"

    def handle_data(self, data: str) -> None:
        if self._in_script:
            attrs, body = self.scripts[-1]
            self.scripts[-1] = (attrs, body + data)
        else:
            self.text.append(data)


def test_the_page_is_self_contained_and_no_name_breaks_out() -> None:
    page_html = render_html(build_report(scenario(hostile=True), prefix="pp", since_s=1800, until_s=UNTIL))
    assert page_html.count(get_plotlyjs()) == 1
    assert HOSTILE not in page_html and "<script>alert" not in page_html.lower()
    page = Page()
    page.feed(page_html)
    page.close()
    assert [attrs.get("type") for attrs, _ in page.scripts] == [None, "application/json", None]  # nothing injected
    assert HOSTILE in "".join(page.text)  # shown, as text
    script_src = re.search(r"script-src ([^;]*)", page.policy).group(1).split()  # type: ignore[union-attr]
    hashes = {"'sha256-" + base64.b64encode(hashlib.sha256(body.encode()).digest()).decode() + "'" for attrs, body in page.scripts if attrs.get("type") is None}
    assert set(script_src) == hashes and "default-src 'none'" in page.policy
    charts = json.loads(page.scripts[1][1])
    assert [c["layout"]["title"]["text"] for c in charts] == ["Health score (pipeline)", "Operations per second", "p95 latency (ms)", "Error rate", "Alert firing episodes"]
    assert html.escape(HOSTILE) in [trace["name"] for trace in charts[1]["data"]]  # plotly reads names as markup: escaped there too
    bars = {(trace["name"], y): x for trace in charts[4]["data"] for y, x in zip(trace["y"], trace["x"])}
    assert bars[("critical", "max_error_rate · extractor")] == 180_000  # ms, from its start


@pytest.mark.parametrize(
    "args, until_s, suffixes",
    [
        ((), UNTIL + 10, (".json", ".html")),  # by default the period ends at the newest statistics window
        (("--until", str(UNTIL), "--json-only"), UNTIL, (".json",)),
        (("--until", "2027-01-15T08:30:00Z"), UNTIL, (".json", ".html")),
    ],
)
def test_the_command_reads_the_streams_and_writes_the_report(real_server: EmbeddedServer, prefix: str, tmp_path: Path, args: tuple[str, ...], until_s: float, suffixes: tuple[str, ...]) -> None:
    entries = scenario()
    with redis.Redis.from_url(real_server.url) as client:
        for short, fields in entries.items():
            for entry in fields:
                client.xadd(f"{prefix}:{short}", entry)
    config = Config.from_env({"PIPEPULSE_REDIS_URL": real_server.url, "PIPEPULSE_PREFIX": prefix, "PIPEPULSE_STATE_DIR": str(tmp_path / "state")})
    result = CliRunner().invoke(report, ["--since", "30m", "--out", str(tmp_path / "out"), *args], obj=config)
    assert result.exit_code == 0, result.output
    stamp = "20270115T083010Z" if until_s == UNTIL + 10 else "20270115T083000Z"
    assert result.stdout.split() == [str(tmp_path / "out" / f"report-{stamp}{suffix}") for suffix in suffixes]
    assert f"reading {prefix}:stats" in result.stderr
    written = json.loads((tmp_path / "out" / f"report-{stamp}.json").read_text())
    assert written == json.loads(to_json(build_report(entries, prefix=prefix, since_s=1800, until_s=until_s)))


@pytest.mark.parametrize(
    "args, complaint",
    [
        ((), "nothing to report"),
        (("--until", "tomorrow"), "neither epoch seconds nor an ISO 8601 time"),
        (("--since", "soon"), "is not a duration"),
    ],
)
def test_the_command_refuses_clearly(real_server: EmbeddedServer, prefix: str, tmp_path: Path, args: tuple[str, ...], complaint: str) -> None:
    config = Config.from_env({"PIPEPULSE_REDIS_URL": real_server.url, "PIPEPULSE_PREFIX": prefix, "PIPEPULSE_STATE_DIR": str(tmp_path / "state")})
    result = CliRunner().invoke(report, ["--out", str(tmp_path), *args], obj=config)
    assert result.exit_code != 0 and complaint in result.output
    assert not list(tmp_path.glob("report-*"))
