"""Recommendation rules, fed events through the monitor: the component reports its settings, the data decides."""

from __future__ import annotations

import json
from typing import Any

import pytest

from processors.ledger import Ledger

from tests.processors.alerting import entries, monitor, run, spread
from tests.processors.helpers import T0, items, latest_values, lifecycle, op, stream_outputs, system

GB = 1024**3


def workload(
    config: dict[str, int], *, rate: int = 100, error_share: float = 0.0, hit_share: float | None = None, duration_ms: float = 1.0,
    rss: int | None = GB // 8, host_cpu: float = 30.0, error_type: str = "Throttled",
) -> Any:  # fmt: skip
    """One component, `rate` operations a second, with its settings reported at the start."""

    def series(second: int) -> dict[str, list[list[Any]]]:
        rows = [
            op(T0 + second + (i + 0.5) / rate, duration_ms=duration_ms, ok=i >= error_share * rate, error_type=error_type,
               hits=int(hit_share is not None and i < hit_share * rate), misses=int(hit_share is not None and i >= hit_share * rate))
            for i in range(rate)
        ]  # fmt: skip
        rows += [system(T0 + second + 0.99, rss=rss)] if rss is not None else []  # None: its process is sampled under another name
        rows += [system(T0 + second + 0.995, scope="host", cpu=host_cpu)]
        return {"extractor": ([lifecycle(T0 + second, "started", config)] if second == 0 else []) + rows}

    return series


def advice(outputs: Any) -> set[tuple[str, int | None, int | None]]:
    """The recommendations in force at the end: (kind, current, proposed)."""
    return {(r["kind"], r["current"], r["proposed"]) for r in latest_values(outputs, "recommendations").values() if r is not None}


CASES = {
    "errors at concurrency 4: shed one (AIMD decrease)": (workload({"concurrency": 4}, error_share=0.2), {("lower_concurrency", 4, 3)}),
    "errors at concurrency 20: shed a tenth": (workload({"concurrency": 20}, error_share=0.2), {("lower_concurrency", 20, 18)}),
    "application errors at concurrency 4: less concurrency would not help": (workload({"concurrency": 4}, error_share=0.2, error_type="ValueError"), set()),
    "a broken pool's first failures: not overload": (workload({"concurrency": 4}, error_share=0.3, error_type="BrokenProcessPool"), set()),
    "errors at concurrency 1: nothing lower to go to": (workload({"concurrency": 1}, error_share=0.2), set()),
    "everything fails: restart rather than shed": (
        workload({"concurrency": 2, "restart_generation": 3}, error_share=1.0, error_type="BrokenProcessPool"), {("restart_component", 3, None)},
    ),
    "almost everything is throttled: shed, do not restart": (workload({"concurrency": 2}, error_share=0.95), {("lower_concurrency", 2, 1)}),
    "busy and healthy with CPU to spare: one more (AIMD increase)": (workload({"concurrency": 2}, duration_ms=15.0), {("raise_concurrency", 2, 3)}),
    "busy but the host CPU is saturated: nothing": (workload({"concurrency": 2}, duration_ms=15.0, host_cpu=95.0), set()),
    "idle: nothing": (workload({"concurrency": 2}, duration_ms=1.0), set()),
    "busy with a few errors: not raised": (workload({"concurrency": 2}, duration_ms=15.0, error_share=0.02), set()),
    "hit rate 40 %: double the cache (the ratio capped at 2)": (workload({"cache_size": 256}, hit_share=0.4), {("grow_cache", 256, 512)}),
    "hit rate 60 %: grow by goal / hit rate": (workload({"cache_size": 256}, hit_share=0.6), {("grow_cache", 256, 363)}),
    "hit rate 40 %, memory sampled under another component: judged by the largest process": (
        lambda s: {**workload({"cache_size": 256}, hit_share=0.4, rss=None)(s), "sampler": [system(T0 + s + 0.99, rss=GB // 8)]},
        {("grow_cache", 256, 512)},
    ),
    "hit rate 90 %: nothing": (workload({"cache_size": 256}, hit_share=0.9), set()),
    "hit rate 40 % with memory half used: not grown": (workload({"cache_size": 256}, hit_share=0.4, rss=int(1.2 * GB)), set()),
    "memory pressure: shrink the cache and the batches": (
        workload({"cache_size": 256, "batch_size": 64}, hit_share=0.4, rss=int(1.6 * GB)), {("shrink_cache", 256, 128), ("reduce_batch_size", 64, 32)},
    ),
    "memory pressure at the smallest cache: nothing": (workload({"cache_size": 16}, hit_share=0.9, rss=int(1.6 * GB)), set()),
    "no settings reported: no advice": (workload({}, error_share=0.2, hit_share=0.4), set()),
    "too few operations to judge": (workload({"concurrency": 4}, rate=3, error_share=0.5), set()),
}


@pytest.mark.parametrize("case", list(CASES))
def test_recommendation_rules(case: str) -> None:
    series, expected = CASES[case]
    assert advice(run(series, 12)) == expected


def test_each_recommendation_says_why_what_it_expects_and_until_when() -> None:
    (first, *_) = [json.loads(f["json"]) for f in stream_outputs(run(workload({"concurrency": 4}, error_share=0.2), 12), "recommendations")]
    assert first["reason"].startswith("extractor is overloaded (error rate 20.0%")
    assert first["expected_effect"] and first["priority"] == "high" and 0 < first["confidence"] <= 1
    assert first["expires_at_s"] - first["issued_at_s"] == 60.0
    assert first["evidence"]["error_rate"] == pytest.approx(0.2)


def test_a_repeat_is_not_reissued_until_it_expires_and_advice_is_withdrawn_when_the_data_no_longer_supports_it() -> None:
    faulty = workload({"concurrency": 4}, error_share=0.2)
    healthy = workload({"concurrency": 4})
    processor = monitor()
    outputs = processor.apply(items(entries(faulty, 75)))
    issued = [json.loads(f["json"]) for f in stream_outputs(outputs, "recommendations")]
    assert [(r["recommendation_id"], r["proposed"]) for r in issued] == [("r1", 3), ("r2", 3)]  # once, and again after 60 s
    assert issued[1]["issued_at_s"] - issued[0]["issued_at_s"] == 60.0
    later = processor.apply(items(entries(healthy, 15, start=75, seqs={"extractor": 75})))
    assert latest_values(later, "recommendations") == {"extractor/lower_concurrency": None}
    assert not stream_outputs(later, "recommendations")


def test_a_restored_recommender_continues_exactly_where_it_stopped() -> None:
    log = entries(lambda s: workload({"concurrency": 4}, error_share=0.2 if s < 40 or s > 60 else 0.0)(s), 130)
    whole = monitor().apply(items(log))
    first = monitor()
    head = first.apply(items(log[:100]))
    second = monitor()
    second.restore(first.snapshot())
    tail = second.apply(items(log[100:], _ledger_after(log[:100])))
    assert stream_outputs(head + tail, "recommendations") == stream_outputs(whole, "recommendations")
    assert len(stream_outputs(whole, "recommendations")) == 3


def _ledger_after(log: Any) -> Ledger:
    ledger = Ledger()
    items(log, ledger)
    return ledger


def test_a_proposal_that_wanders_a_little_is_the_same_advice_but_a_new_current_value_is_new_advice() -> None:
    processor = monitor()
    wandering = processor.apply(items(entries(lambda s: workload({"cache_size": 256}, hit_share=0.5 + (s % 3) * 0.02)(s), 20)))
    proposals = [json.loads(f["json"])["proposed"] for f in stream_outputs(wandering, "recommendations")]
    assert proposals == [proposals[0]] and 400 < proposals[0] < 460  # 256 * 0.85 / 0.5..0.54, once

    def obeyed(second: int) -> dict[str, list[list[Any]]]:
        rows = workload({}, hit_share=0.5)(second)["extractor"]
        return {"extractor": ([lifecycle(T0 + second, "configured", {"cache_size": 435})] if second == 20 else []) + rows}

    grown = processor.apply(items(entries(obeyed, 5, start=20, seqs={"extractor": 20})))
    ((current, proposed),) = [(json.loads(f["json"])["current"], json.loads(f["json"])["proposed"]) for f in stream_outputs(grown, "recommendations")]
    assert current == 435 and 700 < proposed < 760


def test_a_component_gone_silent_is_restarted_once_its_absence_alert_fires() -> None:
    processor = monitor()
    processor.apply(items(entries(workload({"concurrency": 2, "restart_generation": 1}), 12)))
    silent = processor.apply(items(entries(lambda s: {"other": spread(s, 5, op)}, 45, start=12)))
    restarts = [json.loads(f["json"]) for f in stream_outputs(silent, "recommendations")]
    assert [(r["kind"], r["current"], r["reason"]) for r in restarts] == [("restart_component", 1, "restart extractor: it stopped reporting (component_absent is firing)")]


def test_advice_needs_a_live_component() -> None:
    """A component that stopped reporting gets no advice from its old figures."""
    processor = monitor()
    processor.apply(items(entries(workload({"concurrency": 4}, error_share=0.2), 12)))
    quiet = processor.apply(items(entries(lambda s: {"other": spread(s, 5, op)}, 40, start=12)))
    assert latest_values(quiet, "recommendations").get("extractor/lower_concurrency", "gone") is None
