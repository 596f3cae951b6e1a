"""Properties of the alert lifecycle under arbitrary input (hypothesis), through the evaluator's public API."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import example, given, settings
from hypothesis import strategies as st

from processors.alert_state import Policy
from processors.alerts import AlertEvaluator, AlertSettings
from processors.contract import LatestOutput, Output
from processors.rules import parse_rule

from tests.processors.helpers import T0

POLICY = Policy(flap_window_s=600.0, flap_changes=5, flap_quiet_s=300.0)


def evaluator(for_s: float, keep_firing_for_s: float) -> AlertEvaluator:
    rule = parse_rule({"name": "r", "kind": "threshold", "metric": "error_rate", "levels": {"warning": 0.5}, "recovery": 0.5, "for_s": for_s, "keep_firing_for_s": keep_firing_for_s})
    return AlertEvaluator(AlertSettings(rules=(rule,), policy=POLICY))


def document(now_s: float, error_rate: float | None) -> dict[str, Any]:
    stats = {} if error_rate is None else {"error_rate": error_rate, "count": 100}
    return {"stream_time_s": now_s, "components": {"c": {"stats": stats}}, "pipeline": {}}


def feed(alerts: AlertEvaluator, trace: list[tuple[float, float | None]]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Evaluate each (time, error rate) in order; returns the alert events and the final active set."""
    outputs: list[Output] = []
    for now_s, rate in trace:
        outputs += alerts.evaluate(now_s, {"10s": document(now_s, rate)}, lambda series, metric: None)
    events = [json.loads(o.fields["json"]) for o in outputs if not isinstance(o, LatestOutput)]
    active: dict[str, Any] = {}
    for o in outputs:
        if isinstance(o, LatestOutput):
            active[o.field] = o.value
    return events, {k: v for k, v in active.items() if v is not None}


steps = st.lists(st.tuples(st.floats(0.1, 20.0), st.one_of(st.none(), st.sampled_from([0.0, 0.2, 0.6, 0.9]))), min_size=1, max_size=80)


def timeline(deltas: list[tuple[float, float | None]]) -> list[tuple[float, float | None]]:
    now_s, trace = T0, []
    for delta, rate in deltas:
        now_s += delta
        trace.append((now_s, rate))
    return trace


@settings(max_examples=150, deadline=None)
@given(steps, st.sampled_from([0.0, 5.0, 30.0]), st.sampled_from([0.0, 10.0]))
def test_nothing_fires_before_it_was_pending_for_its_for(deltas: list[tuple[float, float | None]], for_s: float, keep_s: float) -> None:
    trace = timeline(deltas)
    events, _ = feed(evaluator(for_s, keep_s), trace)
    for event in events:
        if event["transition"] == "firing":
            since = event["active_since_s"]
            assert event["at_s"] - since >= for_s
            assert all(rate is not None and rate > 0.5 for t, rate in trace if since <= t <= event["at_s"])


LEGAL = {  # state before -> transitions allowed from it (one alert per fingerprint: a path through this graph)
    "inactive": {"pending", "firing", "flapping"},  # flapping: a dropped pending alert keeps its recent fire/resolve history
    "pending": {"firing", "dropped", "severity_changed", "flapping"},  # flapping: its firing was one change too many, and replaces that page
    "firing": {"resolved", "severity_changed", "flapping", "escalated", "acked", "unacked"},
    "flapping": {"flapping", "settled", "severity_changed", "escalated"},
    "resolved": {"pending", "firing", "flapping"},
}


@settings(max_examples=150, deadline=None)
@given(steps, st.sampled_from([0.0, 5.0]), st.sampled_from([0.0, 10.0]))
@example([(1.0, 0.6), (5.0, 0.6), (1.0, None)] * 2 + [(1.0, 0.6), (5.0, 0.6)], 5.0, 0.0)  # the fifth change fires it straight into flapping
def test_each_fingerprint_walks_one_legal_path(deltas: list[tuple[float, float | None]], for_s: float, keep_s: float) -> None:
    events, active = feed(evaluator(for_s, keep_s), timeline(deltas))
    state = "inactive"
    for event in events:
        assert event["transition"] in LEGAL[state], (state, event["transition"])
        state = {"dropped": "inactive"}.get(event["transition"], event["state"])
    assert len(active) <= 1
    assert (state in ("pending", "firing", "flapping")) == bool(active)


@settings(max_examples=150, deadline=None)
@given(steps, st.sampled_from([0.0, 5.0]), st.sampled_from([0.0, 10.0, 60.0]))
def test_every_alert_resolves_once_its_condition_clears_and_keep_firing_ends(deltas: list[tuple[float, float | None]], for_s: float, keep_s: float) -> None:
    trace = timeline(deltas)
    end_s = trace[-1][0]
    calm = [(end_s + i, 0.0) for i in range(1, int(keep_s + POLICY.flap_quiet_s) + 3)]
    events, active = feed(evaluator(for_s, keep_s), trace + calm)
    assert active == {}
    if any(e["transition"] == "firing" for e in events):
        last = [e for e in events if e["transition"] in ("firing", "resolved", "flapping", "settled")][-1]
        assert last["state"] == "resolved"
    for event in events:
        if event["transition"] == "resolved":  # only after its condition stayed clear for keep_firing_for
            assert not any(rate is not None and rate > 0.5 for t, rate in trace + calm if event["at_s"] - keep_s <= t <= event["at_s"])


@settings(max_examples=50, deadline=None)
@given(st.floats(12.0, 100.0), st.integers(4, 10))
def test_oscillating_input_is_detected_as_flapping_and_notifies_less(period_s: float, cycles: int) -> None:
    trace = [(T0 + i * period_s / 2, 0.9 if i % 2 == 0 else 0.0) for i in range(2 * cycles)]
    events, _ = feed(evaluator(0.0, 0.0), trace)
    transitions = [e["transition"] for e in events]
    changes = [(i, t) for i, t in enumerate(transitions) if t in ("firing", "resolved", "flapping")]
    if period_s * (POLICY.flap_changes - 1) / 2 < POLICY.flap_window_s:
        assert "flapping" in transitions
        assert len(changes) < 2 * cycles  # once flapping, the oscillation stops paging every change
    else:
        assert "flapping" not in transitions
