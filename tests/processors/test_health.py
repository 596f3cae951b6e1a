"""The health score, fed events through the monitor: it explains itself and never contradicts the alerts."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from processors.health import level

from tests.processors.alerting import alert_events, health_snapshots, run
from tests.processors.helpers import T0, latest_values, op, system

GB = 1024**3


def workload(error_share: float, hit_share: float, duration_ms: float, rss_bytes: int, n: int = 40) -> Any:
    def series(second: int) -> dict[str, list[list[Any]]]:
        rows = [
            op(T0 + second + (i + 0.5) / n, duration_ms=duration_ms, ok=i >= error_share * n, error_type="E", hits=int(i < hit_share * n), misses=int(i >= hit_share * n))
            for i in range(n)
        ]
        return {"parser": rows + [system(T0 + second + 0.99, rss=rss_bytes)]}

    return series


def check_consistent(snapshot: dict[str, Any]) -> None:
    earned = sum(part["points"] for part in snapshot["factors"].values())
    deducted = sum(d["points"] for d in snapshot["deductions"])
    assert snapshot["score"] == round(max(0.0, earned - deducted), 3)
    assert all(0 <= part["points"] <= part["of"] for part in snapshot["factors"].values())
    assert sum(part["of"] for part in snapshot["factors"].values()) == 100
    assert snapshot["level"] == level(snapshot["score"])
    if any(d["severity"] == "critical" for d in snapshot["deductions"]):
        assert snapshot["level"] != "excellent"


@settings(max_examples=40, deadline=None)
@given(st.floats(0.0, 1.0), st.floats(0.0, 1.0), st.sampled_from([1.0, 400.0, 1500.0, 5000.0]), st.sampled_from([GB // 4, GB, int(1.9 * GB), int(2.5 * GB)]))
def test_the_breakdown_adds_up_and_a_critical_alert_is_never_excellent(error_share: float, hit_share: float, duration_ms: float, rss_bytes: int) -> None:
    outputs = run(workload(error_share, hit_share, duration_ms, rss_bytes), 12)
    snapshots = health_snapshots(outputs)
    assert snapshots
    for snapshot in snapshots:
        check_consistent(snapshot)
        for body in snapshot["components"].values():
            if body["status"] != "unknown":
                check_consistent(body)
    firing = {e["fingerprint"] for e in alert_events(outputs) if e["state"] == "firing"}
    assert {d["fingerprint"] for d in snapshots[-1]["deductions"]} <= firing


def test_a_healthy_pipeline_is_excellent_with_full_points() -> None:
    (snapshot, *_) = health_snapshots(run(workload(0.0, 1.0, 1.0, GB // 4), 3))
    assert snapshot["score"] == 100.0 and snapshot["level"] == "excellent"
    assert snapshot["components"]["parser"]["status"] == "healthy"


def test_each_factor_earns_its_points_between_bad_and_good() -> None:
    current = latest_values(run(workload(0.05, 0.65, 1500.0, int(1.5 * GB)), 3), "health")["current"]
    factors = {name: part["points"] for name, part in current["factors"].items()}
    # success 95 % is 5/9 of the way from 90 to 99; hit rate 65 % half way from 40 to 90;
    # Apdex 0.5 (every operation tolerating at T = 500 ms) earns nothing; 75 % of the memory limit is half way.
    assert factors == {"success": round(25 * 5 / 9, 3), "cache": 15.0, "speed": 0.0, "memory": 10.0}


def test_an_alert_moves_the_score_at_once_and_says_so() -> None:
    def series(second: int) -> dict[str, list[list[Any]]]:
        return workload(0.5 if second >= 5 else 0.0, 1.0, 1.0, GB // 4)(second)

    outputs = run(series, 8)
    firing = [e for e in alert_events(outputs, "max_error_rate") if e["transition"] == "firing"][0]
    after = [s for s in health_snapshots(outputs) if s["at_s"] == firing["at_s"]]
    assert after, "a health snapshot follows the alert in the same batch"
    moved = {m["what"]: m["points"] for m in after[0]["moved"]}
    assert moved["alert:max_error_rate"] == -15.0  # one second of 50 % in a 6 s history: 8 %, an error
    assert after[0]["components"]["parser"]["status"] == "critical"


def test_a_stale_component_is_unknown_never_its_last_values() -> None:
    def series(second: int) -> dict[str, list[list[Any]]]:
        return workload(0.0, 1.0, 1.0, GB // 4)(second) if second < 3 else {}

    current = latest_values(run(series, 40), "health")["current"]
    assert current["components"]["parser"]["status"] == "unknown"
    assert (current["components"]["parser"]["score"], current["components"]["parser"]["level"]) == (None, "unknown")
    assert [d["rule"] for d in current["deductions"]] == ["component_absent"]
