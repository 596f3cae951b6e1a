"""The optimizer's safety, fed recommendations, health snapshots and operator commands; its outputs are the proof."""

from __future__ import annotations

import itertools
import json
from typing import Iterable, Sequence

import pytest

from schemas.codec import pack, unpack
from schemas.control import SETTINGS, Action, ControlSetting, OptimizerCommand, Recommendation, decode, encode

from processors.contract import ControlOutput, Output, RecordItem
from processors.control_policy import OptimizerSettings
from processors.optimizer import Optimizer

from tests.processors.helpers import T0, stream_outputs

_ids = itertools.count(1)


def rec(at: float, proposed: int | None, *, kind: str = "lower_concurrency", setting: str = "concurrency", current: int | None = 4, component: str = "extractor", ttl: float = 60.0) -> RecordItem:
    body = Recommendation(
        recommendation_id=f"r{next(_ids)}", kind=kind, component=component, setting=setting, current=current, proposed=proposed,
        reason="test", expected_effect="test", priority="high", confidence=1.0, issued_at_s=T0 + at, expires_at_s=T0 + at + ttl,
    )  # fmt: skip
    return RecordItem("recommendations", f"{next(_ids)}-0", {"id": body.recommendation_id, "json": encode(body)})


def health(at: float, score: float, component: str = "extractor") -> RecordItem:
    """A snapshot whose four factors share the score evenly (what a setting is judged on is its factors' points)."""
    factors = {f: {"points": score / 4} for f in ("cache", "success", "speed", "memory")}
    body = {"at_s": T0 + at, "score": score, "components": {component: {"score": score, "factors": factors}}}
    return RecordItem("health", f"{next(_ids)}-0", {"at_s": str(T0 + at), "json": json.dumps(body)})


def switch(at: float, mode: str) -> RecordItem:
    return RecordItem("optimizer_commands", f"{next(_ids)}-0", {"json": encode(OptimizerCommand(mode=mode, by="ops", reason="test", at_s=T0 + at))})


def writes(outputs: Iterable[Output]) -> list[ControlSetting]:
    return [decode(ControlSetting, o.value) for o in outputs if isinstance(o, ControlOutput)]


def actions(outputs: Sequence[Output]) -> list[Action]:
    return [decode(Action, f["json"]) for f in stream_outputs(outputs, "actions")]


def decisions(outputs: Sequence[Output]) -> list[tuple[str, str]]:
    return [(a.decision, a.reason.split(":")[0]) for a in actions(outputs)]


def steady(seconds: range, score: float = 80.0) -> list[RecordItem]:
    return [health(s, score) for s in seconds]


@pytest.mark.parametrize(
    ("current", "proposed", "written"),
    [
        (2, 10**9, 6),  # +4 at most from 2
        (20, 10**9, 40),  # double at most from 20
        (40, 10**9, 64),  # and never above the bound
        (4, -7, 2),  # half at most
        (1, 0, None),  # clamped to the minimum: no change at all
        (64, 65, None),
        (2, 3, 3),
    ],
)
def test_an_out_of_range_value_is_never_written(current: int, proposed: int, written: int | None) -> None:
    spec = SETTINGS["concurrency"]
    kind = "raise_concurrency" if proposed > current else "lower_concurrency"
    outputs = Optimizer().apply([health(0, 80), rec(1, proposed, kind=kind, current=current)])
    assert [w.value for w in writes(outputs)] == ([] if written is None else [written])
    assert all(spec.minimum <= w.value <= spec.maximum for w in writes(outputs))


def test_a_flood_of_recommendations_changes_a_setting_at_most_once_per_interval() -> None:
    settings = OptimizerSettings()
    feed: list[RecordItem] = []
    for second in range(180):
        feed.append(health(second, 80.0))
        feed += [rec(second + i / 1000, 1 + (second * 1000 + i) % 60, kind="raise_concurrency", current=4) for i in range(1000)]
    outputs = Optimizer(settings).apply(feed)
    changed_at = [w.issued_at_s for w in writes(outputs) if w.setting == "concurrency"]
    assert 2 <= len(changed_at) <= 180 / settings.cooldown_s
    assert all(b - a >= settings.cooldown_s for a, b in zip(changed_at, changed_at[1:]))
    assert len(actions(outputs)) >= 180_000  # every one of them has its decision on record


def test_the_kill_switch_means_zero_writes_and_every_decision_recorded() -> None:
    optimizer = Optimizer()
    off = optimizer.apply([switch(0, "disabled"), *steady(range(5)), *(rec(1 + i / 100, 2) for i in range(100))])
    assert writes(off) == []
    assert decisions(off)[0] == ("mode_changed", "enabled -> disabled by ops")
    assert set(decisions(off)[1:]) == {("skipped", "kill_switch")} and len(decisions(off)) == 101
    on = optimizer.apply([switch(10, "enabled"), rec(11, 2)])
    assert [w.value for w in writes(on)] == [2]


def test_dry_run_writes_nothing_but_records_what_it_would_do() -> None:
    outputs = Optimizer(OptimizerSettings(mode="dry_run")).apply([*steady(range(3)), rec(3, 2), rec(4, 3, kind="lower_concurrency")])
    assert writes(outputs) == []
    assert [(a.decision, a.old_value, a.new_value) for a in actions(outputs)] == [("dry_run", 4, 2), ("dry_run", 4, 3)]


def test_a_change_that_made_health_worse_is_rolled_back_and_not_retried_soon() -> None:
    optimizer = Optimizer()
    outputs = optimizer.apply([*steady(range(0, 30), 80.0), rec(30, 3), *steady(range(31, 65), 55.0), rec(66, 3), rec(100, 3)])
    assert [(w.value, w.version) for w in writes(outputs)] == [(3, 1), (4, 2)]
    assert decisions(outputs) == [
        ("applied", "lower_concurrency"),
        ("rolled_back", "success+speed points fell 40.0 -> 27.5 (more than 10) after concurrency went 4 -> 3"),
        ("skipped", "cooldown"),
        ("skipped", "held_after_rollback"),
    ]


@pytest.mark.parametrize(("mode", "decision"), [("dry_run", "dry_run"), ("disabled", "skipped")])
def test_without_enabled_mode_a_rollback_or_renewal_writes_nothing_and_changes_nothing(mode: str, decision: str) -> None:
    optimizer = Optimizer(OptimizerSettings(setting_ttl_s=100.0))
    optimizer.apply([*steady(range(0, 30), 80.0), rec(30, 3)])
    outputs = optimizer.apply([switch(31, mode), *steady(range(31, 200), 55.0)])
    assert writes(outputs) == []
    (verdict,) = [a for a in actions(outputs) if a.reason.startswith(("would roll back", "kill_switch: rollback"))]
    assert (verdict.decision, verdict.old_value, verdict.new_value) == (decision, 3, 4)
    back = optimizer.apply([switch(201, "enabled"), health(202, 55.0)])
    assert writes(back) == []  # the setting ran out meanwhile: the components are on their defaults, and it is not revived


def test_a_change_that_helped_is_kept() -> None:
    outputs = Optimizer().apply([*steady(range(0, 30), 50.0), rec(30, 3), *steady(range(31, 65), 85.0)])
    assert [w.value for w in writes(outputs)] == [3]
    (verified,) = [a for a in actions(outputs) if a.decision == "verified"]
    assert verified.evidence == {"factors": "success+speed", "points_before": 25.0, "points_after": 42.5}


def test_no_reversal_soon_after_a_change_so_probing_does_not_flip_flop() -> None:
    optimizer = Optimizer()
    first = optimizer.apply([*steady(range(0, 30), 50.0), rec(30, 3), *steady(range(31, 70), 80.0), rec(100, 4, kind="raise_concurrency", current=3)])
    assert decisions(first) == [("applied", "lower_concurrency"), ("verified", "kept concurrency=3"), ("skipped", "held_after_change")]
    later = optimizer.apply([health(331, 80.0), rec(331, 4, kind="raise_concurrency", current=3)])
    assert [(a.decision, a.new_value) for a in actions(later)] == [("applied", 4)]
    # a step up never holds back a step down: an overload right after probing is answered at once
    overload = optimizer.apply([*steady(range(332, 370), 80.0), rec(370, 3)])
    assert [(a.decision, a.new_value) for a in actions(overload) if a.decision != "verified"] == [("applied", 3)]


def test_restarts_back_off_and_give_up_after_too_many() -> None:
    settings = OptimizerSettings()
    optimizer = Optimizer(settings)
    times = [0, 5, 11, 25, 31, 65, 71, 150, 152, 300, 3601, 3700]
    outputs = [optimizer.apply([health(t, 80), rec(t + 0.5, None, kind="restart_component", setting="restart_generation", current=0)]) for t in times]
    verdicts = [decisions(o)[0][1] if decisions(o)[0][0] == "skipped" else "restarted" for o in outputs]
    # back-off 10 s, then 20, 40, 80; the fifth restart is the last one within the hour
    assert verdicts == [
        "restarted", "restart_backoff", "restarted", "restart_backoff", "restarted", "restart_backoff", "restarted", "restart_backoff", "restarted",
        "restart_limit", "restarted", "restarted",  # the hour passed, and 10 min without a restart reset the back-off
    ]  # fmt: skip
    assert [w.value for o in outputs for w in writes(o)] == [1, 2, 3, 4, 5, 6, 7]  # rising past the expired setting


def test_small_changes_are_within_tolerance_and_scale_down_is_stabilized() -> None:
    assert decisions(Optimizer().apply([health(0, 80), rec(1, 21, kind="raise_concurrency", current=20)])) == [("skipped", "within_tolerance")]
    optimizer = Optimizer()
    optimizer.apply([*steady(range(0, 5)), rec(5, 6, current=8)])  # 8 -> 6
    later = optimizer.apply([*steady(range(6, 38)), rec(38, 5, current=6), rec(40, 2, current=6)])
    # 5 was proposed 2 s before 2: scaling down goes only as far as the highest recent proposal
    assert [w.value for w in writes(later)] == [5]


def test_expired_and_malformed_advice_is_skipped_with_its_reason() -> None:
    bad = RecordItem("recommendations", "9-0", {"json": '{"v": 1, "kind": "lower_concurrency"}'})
    outputs = Optimizer().apply([health(100, 80), rec(0, 2, ttl=30), bad])
    assert [d[0] for d in decisions(outputs)] == ["skipped", "skipped"]
    assert actions(outputs)[0].reason.startswith("expired")
    assert actions(outputs)[1].reason.startswith("malformed recommendations entry 9-0")


def test_settings_are_renewed_before_they_expire() -> None:
    settings = OptimizerSettings(setting_ttl_s=100.0)
    outputs = Optimizer(settings).apply([health(0, 80), rec(1, 2), *steady(range(2, 160, 5))])
    renewed = writes(outputs)
    assert [w.version for w in renewed] == [1, 1, 1, 1]
    assert all(b.expires_at_s > a.expires_at_s for a, b in zip(renewed, renewed[1:]))
    assert all(w.expires_at_s - w.issued_at_s == 100.0 for w in renewed[:1])


def test_a_restored_optimizer_continues_exactly() -> None:
    feed = [*steady(range(0, 30), 80.0), rec(30, 3), *steady(range(31, 65), 55.0), rec(70, 2), *steady(range(70, 120), 60.0), switch(121, "dry_run"), rec(400, 6, kind="raise_concurrency")]
    whole = Optimizer().apply(feed)
    for k in (10, 31, 50, 90):
        first = Optimizer()
        head = first.apply(feed[:k])
        second = Optimizer()
        second.restore({key: unpack(pack(value)) for key, value in first.snapshot().items()})  # as stored: msgpack
        assert head + second.apply(feed[k:]) == whole, k
    assert {a.decision for a in actions(whole)} >= {"applied", "rolled_back", "mode_changed", "dry_run"}


@pytest.mark.parametrize(
    "body",
    [
        '{"v": 1, "recommendation_id": "r", "kind": "lower_concurrency", "component": "c", "setting": "concurrency", "current": 4, "proposed": 3, "reason": "", "expected_effect": "", "priority": "high", "confidence": 1, "issued_at_s": 1, "expires_at_s": 2, "evidence": [1]}',
        '{"v": 1, "recommendation_id": "r", "kind": "lower_concurrency", "component": "c", "setting": "concurrency", "current": 4, "proposed": "3", "reason": "", "expected_effect": "", "priority": "high", "confidence": 1, "issued_at_s": 1, "expires_at_s": 2}',
        '{"v": 1, "recommendation_id": "r", "kind": "restart_component", "component": "c", "setting": "concurrency", "current": 64, "proposed": null, "reason": "", "expected_effect": "", "priority": "high", "confidence": 1, "issued_at_s": 1, "expires_at_s": 2}',
        '{"v": 1, "recommendation_id": "r", "kind": "restart_component", "component": ["c"], "setting": "restart_generation", "current": 2.5, "proposed": null, "reason": "", "expected_effect": "", "priority": "high", "confidence": 1, "issued_at_s": 1, "expires_at_s": 2}',
    ],
)
def test_a_malformed_recommendation_is_skipped_with_its_reason_and_changes_nothing(body: str) -> None:
    optimizer = Optimizer()
    outputs = optimizer.apply([health(0, 80), RecordItem("recommendations", "7-0", {"json": body})])
    assert writes(outputs) == [] and decisions(outputs) == [("skipped", "malformed recommendations entry 7-0")]
    assert optimizer.apply([health(600, 80)]) == []  # nothing half-stored that a later snapshot would trip on


@pytest.mark.parametrize("components", ["null", "[1]", '{"c": {"score": 1, "factors": {"speed": {}}}}', '{"c": {"score": 1, "factors": {"speed": {"points": NaN}}}}'])
def test_a_malformed_health_snapshot_never_raises(components: str) -> None:
    outputs = Optimizer().apply([RecordItem("health", "8-0", {"json": f'{{"at_s": {T0}, "components": {components}}}'})])
    assert all(a.decision == "skipped" for a in actions(outputs))


def test_an_operators_clock_running_ahead_does_not_age_the_advice() -> None:
    outputs = Optimizer().apply([health(0, 80), switch(3600, "enabled"), rec(5, 2)])
    assert [w.value for w in writes(outputs)] == [2]
