"""Every shipped rule against input series, as `promtool test rules` does: a firing case, a quiet case,
and a missing-data case each, with the expected transitions at given times (seconds after T0).

Input: one batch per component per second (rows spread within the second), then a tick at
the second's end. Component rules are judged on every batch, at its newest event (x.95 for
10 rows a second); every rule is judged at every tick, on the whole second.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from processors.rules import RuleError, load_rules
from processors.stats import StatsSettings

from tests.processors.alerting import Series, alert_events, monitor, run, spread, transitions
from tests.processors.helpers import T0, count, lifecycle, op, system

GB = 1024**3


def ops(second: int, n: int = 10, **fields: Any) -> dict[str, list[list[Any]]]:
    return {"parser": spread(second, n, op, **fields)}


def errors_at(rate: float, n: int = 100) -> Series:
    """`n` operations a second, the first `rate * n` of them failing."""
    return lambda s: {"parser": [op(T0 + s + (i + 0.5) / n, ok=i >= rate * n, error_type="E") for i in range(n)]}


def with_sample(second: int, rows: list[list[Any]], **sample: Any) -> dict[str, list[list[Any]]]:
    return {"parser": rows + [system(T0 + second + 0.99, **sample)]}


def phases(*spans: tuple[int, Series]) -> Series:
    """Input that changes over time: (first second, series) pairs."""

    def series(second: int) -> dict[str, list[list[Any]]]:
        return [s for start, s in spans if second >= start][-1](second)

    return series


def silent(second: int) -> dict[str, list[list[Any]]]:
    return {}


CASES: dict[str, tuple[str, Series, int, list[tuple[float, str, str]]]] = {
    # max_processing_time: p99 of an operation over 30 s (error), 60 s (critical)
    "slow operation fires at the first tick": ("max_processing_time", lambda s: ops(s, duration_ms=40_000.0), 5, [(1.0, "firing", "error")]),
    "slower operation is critical": ("max_processing_time", lambda s: ops(s, duration_ms=70_000.0), 3, [(1.0, "firing", "critical")]),
    "fast operation stays quiet": ("max_processing_time", lambda s: ops(s, duration_ms=100.0), 20, []),
    "a component without operations has no processing time": ("max_processing_time", lambda s: {"parser": [count(T0 + s + 0.5, "files", 1)]}, 20, []),
    "operation that stops reporting resolves once it leaves the window": (
        "max_processing_time",
        phases((0, lambda s: ops(s, duration_ms=40_000.0)), (5, lambda s: {"parser": [count(T0 + s + 0.5, "files", 1)]})),
        20,
        [(1.0, "firing", "error"), (14.0, "resolved", "error")],
    ),
    # max_error_rate: 5 % error, 25 % critical, recovery below 3 %, at least 20 operations
    "error rate over 5 % fires": ("max_error_rate", errors_at(0.10), 5, [(0.995, "firing", "error")]),
    "error rate over 25 % is critical": ("max_error_rate", errors_at(0.50), 3, [(0.995, "firing", "critical")]),
    "error rate of 1 % stays quiet": ("max_error_rate", errors_at(0.01), 30, []),
    "too few operations is no data, not an error rate": ("max_error_rate", lambda s: {"parser": [op(T0 + s + 0.5, ok=False, error_type="E")]}, 15, []),
    "hysteresis: 4 % after 10 % keeps firing, 1 % resolves": (
        "max_error_rate",
        phases((0, errors_at(0.10)), (5, errors_at(0.04)), (30, errors_at(0.01))),
        50,
        [(0.995, "firing", "error"), (33.0, "resolved", "error")],  # 3 s of 1 % bring it to the recovery point
    ),
    # min_cache_hit_rate: below 70 % for 10 s (warning), below 40 % (error)
    "cache hit rate of 50 % fires after its for": (
        "min_cache_hit_rate",
        lambda s: {"parser": [op(T0 + s + (i + 0.5) / 20, hits=i % 2, misses=1 - i % 2) for i in range(20)]},
        15,
        [(0.975, "pending", "warning"), (10.975, "firing", "warning")],
    ),
    "cache hit rate of 90 % stays quiet": ("min_cache_hit_rate", lambda s: {"parser": [op(T0 + s + i / 10, hits=1 if i else 0, misses=0 if i else 1) for i in range(10)]}, 20, []),
    "no cache lookups is no data": ("min_cache_hit_rate", lambda s: ops(s, n=20), 20, []),
    # max_memory: a process over 2 GB (error), 3 GB (critical)
    "process over 2 GB fires": ("max_memory", lambda s: with_sample(s, [], rss=int(2.5 * GB)), 3, [(0.99, "firing", "error")]),
    "process over 3 GB is critical": ("max_memory", lambda s: with_sample(s, [], rss=int(3.5 * GB)), 3, [(0.99, "firing", "critical")]),
    "process under 2 GB stays quiet": ("max_memory", lambda s: with_sample(s, [], rss=GB), 20, []),
    "no samples is no data": ("max_memory", lambda s: ops(s), 20, []),
    # min_efficiency: below 60 for 10 s (warning), below 40 (error)
    "efficiency of 50 fires after its for": ("min_efficiency", lambda s: ops(s, n=30, misses=1), 15, [(0.983, "pending", "warning"), (10.983, "firing", "warning")]),
    "efficiency of 100 stays quiet": ("min_efficiency", lambda s: ops(s, n=30, hits=1), 20, []),
    "efficiency without enough operations is no data": ("min_efficiency", lambda s: ops(s, n=1, misses=1), 20, []),
    # cpu_saturation: a process over 90 % over the last minute, for 60 s
    "a saturated process fires after a minute": ("cpu_saturation", lambda s: with_sample(s, [], cpu=95.0), 65, [(1.0, "pending", "warning"), (61.0, "firing", "warning")]),  # 1 m rules are judged at ticks
    "a busy but unsaturated process stays quiet": ("cpu_saturation", lambda s: with_sample(s, [], cpu=70.0), 65, []),
    "no samples: no saturation": ("cpu_saturation", lambda s: ops(s), 65, []),
    # component_absent: stale (30 s without anything) and not stopped
    "a component that goes silent is a critical failure": ("component_absent", phases((0, lambda s: ops(s)), (5, silent)), 50, [(35.0, "firing", "critical")]),  # 30 s after its last event at 4.95
    "a component that comes back resolves": (
        "component_absent",
        phases((0, lambda s: ops(s)), (5, silent), (40, lambda s: ops(s))),
        45,
        [(35.0, "firing", "critical"), (40.95, "resolved", "critical")],
    ),
    "a component that said it stopped is not absent": (
        "component_absent",
        phases((0, lambda s: ops(s)), (4, lambda s: {"parser": [lifecycle(T0 + s + 0.5, "stopped")]}), (5, silent)),
        50,
        [],
    ),
    "heartbeats without work keep a component present": ("component_absent", lambda s: {"parser": [lifecycle(T0 + s + 0.5, "heartbeat")]} if s % 5 == 0 else {}, 60, []),
    # error_rate_spike: 3x the learned baseline and at least +2 points
    "an error spike over the baseline fires": ("error_rate_spike", phases((0, errors_at(0.01)), (80, errors_at(0.08))), 90, [(82.995, "firing", "warning")]),  # 3 s of 8 % lift the 10 s rate past 3 %
    "a steady error rate is its own baseline": ("error_rate_spike", errors_at(0.02), 120, []),
    "no baseline yet: no spike": ("error_rate_spike", errors_at(0.08), 40, []),
    # latency_degradation: p95 against its baseline, 5 / 15 / 30 % for 30 s
    "latency 40 % over baseline goes critical after its for": (
        "latency_degradation",
        phases((0, lambda s: ops(s, n=30, duration_ms=10.0)), (80, lambda s: ops(s, n=30, duration_ms=14.0))),
        120,
        [(83.0, "pending", "critical"), (113.0, "firing", "critical")],  # over the last minute: 3 slow seconds in 60 move the p95
    ),
    "latency 10 % over baseline is a warning": (
        "latency_degradation",
        phases((0, lambda s: ops(s, n=30, duration_ms=10.0)), (80, lambda s: ops(s, n=30, duration_ms=11.0))),
        120,
        [(83.0, "pending", "warning"), (113.0, "firing", "warning")],
    ),
    "steady latency stays quiet": ("latency_degradation", lambda s: ops(s, n=30, duration_ms=10.0), 120, []),
    "sub-millisecond latency tripling is under min_delta": (
        "latency_degradation", phases((0, lambda s: ops(s, n=30, duration_ms=0.1)), (80, lambda s: ops(s, n=30, duration_ms=0.3))), 120, [],
    ),
    "an operation that stops has no degradation": ("latency_degradation", phases((0, lambda s: ops(s, n=30, duration_ms=10.0)), (80, silent)), 120, []),
    # efficiency_degradation: efficiency below its baseline
    "efficiency 20 % under baseline is an error after its for": (
        "efficiency_degradation",
        phases((0, lambda s: ops(s, n=30, hits=1)), (80, lambda s: {"parser": [op(T0 + s + (i + 0.5) / 30, hits=1, ok=i >= 6, error_type="E") for i in range(30)]})),
        135,
        # the last minute's efficiency sinks gradually (the baseline learns the first faulty window before the alert
        # freezes it); a pending alert's severity moves silently (it paged no one)
        [(100.0, "pending", "warning"), (130.0, "firing", "error")],
    ),
    "steady efficiency stays quiet": ("efficiency_degradation", lambda s: ops(s, n=30, hits=1), 120, []),
    "no operations, no efficiency to degrade": ("efficiency_degradation", lambda s: with_sample(s, []), 120, []),
    # memory_exhaustion_forecast: the forecast reaches 2 GB within an hour (warning) or 10 minutes (critical)
    "memory growing towards 2 GB within the hour warns": ("memory_exhaustion_forecast", lambda s: with_sample(s, [], rss=GB + s * 400_000), 70, [(51.0, "firing", "warning")]),  # 45 min away; 5 windows make a forecast
    "memory growing fast is critical": ("memory_exhaustion_forecast", lambda s: with_sample(s, [], rss=GB + s * 5_000_000), 70, [(51.0, "firing", "critical")]),  # 3.5 min away
    "flat memory stays quiet": ("memory_exhaustion_forecast", lambda s: with_sample(s, [], rss=GB), 120, []),
    "no memory samples, no forecast": ("memory_exhaustion_forecast", lambda s: ops(s), 120, []),
    # efficiency_decline_forecast: the pipeline's efficiency forecast falls below 60 within 10 minutes
    "pipeline efficiency in decline warns": (
        "efficiency_decline_forecast",
        lambda s: {"parser": [op(T0 + s + (i + 0.5) / 100, hits=1, ok=i >= s // 4, error_type="E") for i in range(100)]},
        70,
        [(51.0, "firing", "warning")],
    ),
    "steady pipeline efficiency stays quiet": ("efficiency_decline_forecast", lambda s: ops(s, n=30, hits=1), 120, []),
    "an idle pipeline has no efficiency forecast": ("efficiency_decline_forecast", lambda s: with_sample(s, []), 120, []),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_shipped_rule(case: str) -> None:
    rule, series, seconds, expected = CASES[case]
    assert transitions(run(series, seconds), rule) == expected


def test_every_shipped_rule_has_a_firing_a_quiet_and_a_no_data_case() -> None:
    firing = {rule for rule, _, _, expected in CASES.values() if expected}
    quiet = [rule for rule, _, _, expected in CASES.values() if not expected]
    assert firing == {rule.name for rule in load_rules()}
    assert all(quiet.count(rule.name) >= 2 for rule in load_rules())


def test_a_user_file_overrides_disables_and_adds(tmp_path: Path) -> None:
    path = tmp_path / "rules.toml"
    path.write_text(
        """
[[rules]]
name = "max_error_rate"
kind = "threshold"
metric = "error_rate"
levels = { warning = 0.5 }
[[rules]]
name = "cpu_saturation"
enabled = false
[[rules]]
name = "slow_parse"
kind = "threshold"
scope = "operation"
metric = "latency_p50_ms"
levels = { warning = 5.0 }
"""
    )
    rules = {rule.name: rule for rule in load_rules(path)}
    assert rules["max_error_rate"].levels == (("warning", 0.5),)
    assert "cpu_saturation" not in rules and "slow_parse" in rules and "max_memory" in rules


@pytest.mark.parametrize(
    "body, complaint",
    [
        ('kind = "threshold"\nmetric = "nope"\nlevels = { warning = 1.0 }', "metric must be one of"),
        ('kind = "guess"\nmetric = "error_rate"\nlevels = { warning = 1.0 }', "kind must be one of"),
        ('kind = "threshold"\nmetric = "error_rate"\nlevels = { warning = 0.5, critical = 0.1 }', "levels must get worse"),
        ('kind = "threshold"\nmetric = "error_rate"\nlevels = { warning = 0.5 }\nrecovery = 0.6', "recovery 0.6 lies past"),
        ('kind = "threshold"\nmetric = "error_rate"\nlevels = { warning = 0.5 }\nmessage = "{nope}"', "does not format"),
        ('kind = "threshold"\nmetric = "error_rate"\nlevels = { warning = 0.5 }\nfor = 3', "unknown field"),
        ('kind = "trend"\nmetric = "rss_bytes"\nlevels = { warning = 60.0 }', "horizon_s"),
        ('kind = "trend"\nmetric = "cpu_percent"\nthreshold = 90.0\nhorizon_s = 60.0\nlevels = { warning = 60.0 }', "watches a pipeline or component forecast"),
        ('kind = "absence"\nscope = "operation"\nlevels = { critical = 0.0 }', "component scope"),
        ('kind = "threshold"\nmetric = "error_rate"\nlevels = { warning = 0.5 }\nmin_count = "50"', "min_count must be a whole number"),
        ('kind = "trend"\nmetric = "rss_bytes"\nthreshold = 1.0\nhorizon_s = 60.0\nlevels = { warning = 60.0 }\nuse_band = "no"', "use_band must be true or false"),
        ('kind = "threshold"\nmetric = "error_rate"\nlevels = { warning = 0.5 }\nmessage = 5', "message must be text"),
        ('kind = "threshold"\nmetric = "error_rate"\nlevels = { warning = 0.5 }\nfor_s = -1', "for_s must not be negative"),
        ('kind = "threshold"\nmetric = "error_rate"\nlevels = { warning = 0.5 }\nlabels = { component = "x" }', "labels must map names other than"),
    ],
)
def test_a_bad_rule_is_refused_with_its_name_and_field(tmp_path: Path, body: str, complaint: str) -> None:
    path = tmp_path / "rules.toml"
    path.write_text(f'[[rules]]\nname = "mine"\n{body}\n')
    with pytest.raises(RuleError, match=f"'mine'.*{complaint}"):
        load_rules(path)


def test_a_bad_rule_in_a_user_file_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "team.toml"
    path.write_text('[[rules]]\nname = "mine"\nkind = "threshold"\nmetric = "error_rate"\nlevels = { warning = 0.5 }\nmin_count = "50"\n')
    with pytest.raises(RuleError, match=f"{path}: rule 'mine'"):
        load_rules(path)


def test_rule_labels_travel_with_the_alert() -> None:
    rules = tuple(dataclasses.replace(r, labels={"team": "search"}) if r.name == "max_error_rate" else r for r in load_rules())
    (event,) = alert_events(run(errors_at(0.10), 2, monitor(rules=rules)), "max_error_rate")
    assert event["labels"] == {"component": "parser", "team": "search"}


def test_a_broken_file_names_itself(tmp_path: Path) -> None:
    path = tmp_path / "rules.toml"
    path.write_text("[[rules]\n")
    with pytest.raises(RuleError, match=str(path)):
        load_rules(path)


def test_a_resolved_event_reports_the_value_now_not_the_one_that_fired() -> None:
    events = alert_events(run(phases((0, errors_at(0.10)), (5, errors_at(0.0))), 20), "max_error_rate")
    fired, resolved = [e for e in events if e["transition"] in ("firing", "resolved")]
    assert fired["value"] == 0.1 and "10.0%" in fired["message"]
    assert resolved["value"] <= 0.03 and f"{resolved['value']:.1%}" in resolved["message"]


def test_exactly_at_the_limit_is_not_past_it() -> None:
    assert transitions(run(errors_at(0.05), 15), "max_error_rate") == []


def test_a_degradation_that_ends_resolves_and_says_how_far_from_its_baseline() -> None:
    slow_then_back = phases((0, lambda s: ops(s, n=30, duration_ms=10.0)), (80, lambda s: ops(s, n=30, duration_ms=14.0)), (115, lambda s: ops(s, n=30, duration_ms=10.0)))
    events = alert_events(run(slow_then_back, 180), "latency_degradation")
    assert [e["transition"] for e in events] == ["pending", "firing", "resolved"]
    assert events[-1]["at_s"] - T0 == 170.0  # the last minute's p95 is back once the slow seconds are under 5 % of it
    assert "0% above its baseline" in events[-1]["message"] and "10.0 ms" in events[-1]["message"]


def test_a_spike_from_a_clean_baseline_fires() -> None:
    # 4 % errors against a 0 % baseline: past the 2-point minimum at the tick whose window holds five seconds of it in nine
    assert transitions(run(phases((0, errors_at(0.0)), (80, errors_at(0.04))), 88), "error_rate_spike") == [(85.0, "firing", "warning")]


def test_an_absent_component_stays_absent_when_its_statistics_are_forgotten() -> None:
    outputs = run(phases((0, lambda s: ops(s)), (5, silent)), 120, monitor(stats=StatsSettings(forget_after_s=40.0)))
    assert [t[1] for t in transitions(outputs, "component_absent")] == ["firing"]


def test_a_resolved_spike_names_its_zero_baseline() -> None:
    outputs = run(phases((0, errors_at(0.0)), (80, errors_at(0.5)), (90, errors_at(0.0))), 120)
    (resolved,) = [e for e in alert_events(outputs, "error_rate_spike") if e["transition"] == "resolved"]
    assert "baseline 0.0%" in resolved["message"] and "nan" not in resolved["message"]
