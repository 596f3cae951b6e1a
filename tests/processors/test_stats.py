"""The statistics processor, fed events and ticks, judged by its outputs."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest

from schemas.names import PIPELINE_FIELD

from processors.contract import Output
from processors.ledger import Ledger
from processors.stats import StatsProcessor, StatsSettings

from tests.processors.helpers import T0, batch, count, items, lifecycle, op, stream_outputs, system, tick
from tests.processors.helpers import latest_values as latest


def closed(outputs: list[Output]) -> list[dict[str, Any]]:
    return [json.loads(e["json"]) for e in stream_outputs(outputs)]


def run(*entries: Any, settings: StatsSettings = StatsSettings()) -> list[Output]:
    return StatsProcessor(settings).apply(items(entries))


WINDOW_CASES = {
    "count, rate and latency": (
        [op(T0 + 1, duration_ms=d) for d in (1.0, 2.0, 3.0, 4.0)],
        {"count": 4, "rate_per_s": 0.4, "success_rate": 1.0, "error_rate": 0.0, "latency_ms.mean": 2.5, "latency_ms.min": 1.0, "latency_ms.max": 4.0},
    ),
    "errors by type": (
        [op(T0 + 1), op(T0 + 2, ok=False, error_type="KeyError"), op(T0 + 3, ok=False, error_type="KeyError"), op(T0 + 4, ok=False)],
        {"errors": 3, "error_rate": 0.75, "errors_by_type": {"KeyError": 2, "unknown": 1}},
    ),
    "cache hit rate": (
        [op(T0 + 1, hits=3, misses=1), op(T0 + 2, hits=1, misses=3)],
        {"cache": {"hits": 4, "misses": 4, "hit_rate": 0.5}, "efficiency_score": 75.0},
    ),
    "domain counters and their rates": (
        [op(T0 + 1, counters={"calls": 10}), op(T0 + 2, counters={"calls": 5, "files": 1}), count(T0 + 3, "files", 2)],
        {"counters": {"calls": {"total": 15.0, "rate_per_s": 1.5}, "files": {"total": 3.0, "rate_per_s": 0.3}}},
    ),
    "an empty window has no latency rather than NaN": (
        [count(T0 + 1, "files", 1)],
        {"count": 0, "success_rate": None, "latency_ms.p99": None, "efficiency_score": None},
    ),
}


def lookup(doc: dict[str, Any], path: str) -> Any:
    for part in path.split("."):
        doc = doc[part]
    return doc


@pytest.mark.parametrize("case", WINDOW_CASES)
def test_a_closed_window_reports(case: str) -> None:
    rows, expected = WINDOW_CASES[case]
    (document,) = closed(run(batch(rows, seq=1), tick(T0 + 10.25)))
    stats = document["components"]["parser"]["stats"]
    assert {path: lookup(stats, path) for path in expected} == expected
    assert document["pipeline"]["count"] == stats["count"]


def test_a_window_closes_at_end_plus_grace_and_not_before() -> None:
    processor = StatsProcessor(StatsSettings(grace_s=0.5))
    assert closed(processor.apply(items([batch([op(T0 + 1)], seq=1), tick(T0 + 10.49)]))) == []
    (document,) = closed(processor.apply(items([tick(T0 + 10.5)])))
    assert (document["start_s"], document["end_s"]) == (T0, T0 + 10)


def test_late_events_are_counted_per_component_and_not_merged() -> None:
    ledger = Ledger()
    processor = StatsProcessor()
    processor.apply(items([batch([op(T0 + 1)], seq=1), tick(T0 + 10.3)], ledger))
    outputs = processor.apply(items([batch([op(T0 + 5), op(T0 + 12)], seq=2), tick(T0 + 20.3)], ledger))
    (document,) = closed(outputs)
    parser = document["components"]["parser"]
    assert (parser["late_events_total"], parser["stats"]["count"]) == (1, 1)


def test_percentiles_come_from_the_histogram() -> None:
    rows = [op(T0 + 1 + i / 1000, duration_ms=float(i + 1)) for i in range(1000)]
    (document,) = closed(run(batch(rows, seq=1), tick(T0 + 11)))
    latency = document["components"]["parser"]["stats"]["latency_ms"]
    for name, exact in (("p50", 500.5), ("p90", 900.1), ("p99", 990.01)):
        assert latency[name] == pytest.approx(exact, rel=0.01)


def test_operations_producers_processes_and_hosts_each_get_their_stats() -> None:
    rows = [op(T0 + 1, "parse"), op(T0 + 2, "parse"), op(T0 + 3, "tokenize"), system(T0 + 1, read=0), system(T0 + 9, rss=3000, read=800), system(T0 + 5, scope="host", cpu=20)]
    (document,) = closed(run(batch(rows, seq=1, producer="p1"), batch([op(T0 + 4)], seq=1, producer="p2", pid=101), tick(T0 + 11)))
    parser = document["components"]["parser"]
    assert {name: s["count"] for name, s in parser["operations"].items()} == {"parse": 3, "tokenize": 1}
    assert {name: s["count"] for name, s in parser["producers"].items()} == {"p1": 3, "p2": 1}
    assert parser["producers"]["p2"]["pid"] == 101
    process = parser["processes"]["100@h1"]
    assert (process["rss_bytes"], process["rss_bytes_max"], process["read_bytes_per_s"], process["cpu_percent"]) == (3000, 3000, 100.0, 50.0)
    assert document["hosts"]["h1"]["cpu_percent"] == 20.0


def test_a_silent_component_becomes_stale_without_its_last_values() -> None:
    outputs = run(batch([op(T0 + 1)], seq=1), batch([op(T0 + 1)], seq=1, producer="p2", component="extractor"), *(tick(T0 + s) for s in range(2, 50)), batch([op(T0 + 49)], seq=2, producer="p2", component="extractor"), tick(T0 + 51))
    last = closed(outputs)[-1]
    assert last["components"]["parser"]["stale"] is True
    assert "stats" not in last["components"]["parser"]
    assert last["components"]["extractor"]["stale"] is False
    assert latest(outputs, "stats")["parser"]["10s"]["stale"] is True


def test_lifecycle_marks_a_stopped_component() -> None:
    (document,) = closed(run(batch([lifecycle(T0 + 1, "started", {"workers": 4}), lifecycle(T0 + 2, "stopped")], seq=1), tick(T0 + 11)))
    assert document["components"]["parser"]["state"] == "stopped"


def test_sliding_views_are_refreshed_at_every_tick_before_any_window_closes() -> None:
    outputs = run(batch([op(T0 + 1), op(T0 + 3)], seq=1), tick(T0 + 4))
    assert closed(outputs) == []
    live = latest(outputs, "stats_live")["parser"]
    assert (live["10s"]["stats"]["count"], live["1m"]["stats"]["count"]) == (2, 2)
    later = latest(StatsProcessor().apply(items([batch([op(T0 + 1)], seq=1), tick(T0 + 12)])), "stats_live")["parser"]
    assert (later["10s"]["stats"]["count"], later["1m"]["stats"]["count"]) == (0, 1)


def test_the_sliding_10_s_view_covers_10_s_with_windows_shorter_than_that() -> None:
    """Closing a 2 s window must not drop the 1 s slots the last 10 s still read."""
    processor = StatsProcessor(StatsSettings(window_s=2))
    outputs = processor.apply(items([batch([op(T0 + 0.5), system(T0 + 0.5)], seq=1), batch([op(T0 + 6.5)], seq=2), tick(T0 + 9.6)]))
    assert len(closed(outputs)) == 4  # windows ending at 2, 4, 6 and 8 s
    live = latest(outputs, "stats_live")["parser"]["10s"]
    assert live["stats"]["count"] == 2 and live["processes"]["100@h1"]["samples"] == 1
    later = latest(processor.apply(items([tick(T0 + 10.6)])), "stats_live")["parser"]["10s"]
    assert later["stats"]["count"] == 1 and "processes" not in later  # the first second has left the last 10 s


def test_rollups_at_each_minute_cover_1_5_and_15_minutes() -> None:
    entries = [batch([op(T0 + 60 * m + 1)], seq=m + 1) for m in range(6)] + [tick(T0 + 360.5)]
    rollups = [json.loads(e["json"]) for e in stream_outputs(run(*entries), "stats_1m")]
    assert [r["1m"]["end_s"] for r in rollups] == [T0 + 60 * (m + 1) for m in range(6)]
    last = rollups[-1]
    assert [last[v]["pipeline"]["count"] for v in ("1m", "5m", "15m")] == [1, 5, 6]


def test_new_names_past_the_cardinality_cap_share_the_overflow_series() -> None:
    rows = [op(T0 + 1, f"op{i}") for i in range(5)]
    (document,) = closed(run(batch(rows, seq=1), tick(T0 + 11), settings=StatsSettings(max_operations=3)))
    assert sorted(document["components"]["parser"]["operations"]) == ["__overflow__", "op0", "op1", "op2"]
    assert document["components"]["parser"]["operations"]["__overflow__"]["count"] == 2


def test_producers_table_shows_loss_and_drops_per_producer() -> None:
    outputs = run(batch([op(T0 + 1)], seq=0, dropped=0), batch([op(T0 + 2)], seq=3, dropped=7), tick(T0 + 11))
    producer = latest(outputs, "producers")["p1"]
    assert (producer["missing_batches_total"], producer["dropped_total"], producer["events_total"]) == (2, 7, 2)


def test_a_jump_in_time_reports_at_most_fifteen_minutes_of_empty_windows() -> None:
    outputs = run(batch([op(T0 + 1)], seq=1), tick(T0 + 86_400))
    documents = closed(outputs)
    assert documents[0]["pipeline"]["count"] == 1
    assert len(documents) <= 1 + 15 * 6 + 6


def test_pipeline_latest_field_carries_the_pipeline_view() -> None:
    outputs = run(batch([op(T0 + 1)], seq=1), tick(T0 + 11))
    assert latest(outputs, "stats")[PIPELINE_FIELD]["10s"]["pipeline"]["count"] == 1


# -- the replay property and the incremental checkpoint


def workload(seed: int, batches: int = 120) -> list[Any]:
    rng = random.Random(seed)
    entries: list[Any] = []
    seqs: dict[str, int] = {}
    now = T0
    for _ in range(batches):
        now += rng.uniform(0.05, 2.0)
        producer = rng.choice(["p1", "p2", "p3"])
        seqs[producer] = seqs.get(producer, 0) + rng.choice([1, 1, 1, 2])  # some gaps
        rows = [
            op(now - rng.uniform(0, 1.5), rng.choice(["parse", "lookup", "emit"]), rng.lognormvariate(0, 1), ok=rng.random() > 0.1, error_type="E", hits=rng.randint(0, 2), misses=rng.randint(0, 1), counters={"calls": rng.randint(1, 9)} if rng.random() < 0.3 else None)
            for _ in range(rng.randint(1, 40))
        ]
        rows.append(system(now, read=int(now - T0) * 100))
        entries.append(batch(rows, seq=seqs[producer], producer=producer, component={"p1": "parser", "p2": "parser", "p3": "extractor"}[producer]))
        if rng.random() < 0.3:
            entries.append(entries[-1])  # a retried XADD
        if rng.random() < 0.4:
            entries.append(tick(now))
    return entries


@pytest.mark.parametrize("k", [1, 37, 150])
def test_replay_property_apply_n_equals_apply_k_snapshot_restore_rest(k: int) -> None:
    entries = workload(seed=k)
    whole_ledger, whole = Ledger(), StatsProcessor()
    expected = whole.apply(items(entries, whole_ledger))
    first_ledger, first = Ledger(), StatsProcessor()
    outputs = first.apply(items(entries[:k], first_ledger))
    second = StatsProcessor()
    second.restore(first.snapshot())
    second_ledger = Ledger.restore(first_ledger.snapshot())
    outputs += second.apply(items(entries[k:], second_ledger))
    assert outputs == expected
    assert second.snapshot() == whole.snapshot()
    assert len(stream_outputs(expected)) > 5


def test_incremental_changes_rebuild_the_snapshot() -> None:
    """What the runtime commits (changes after each batch) adds up to the full snapshot."""
    processor = StatsProcessor()
    checkpoint: dict[Any, Any] = {}
    entries = workload(seed=3, batches=300)
    for start in range(0, len(entries), 7):
        processor.apply(items(entries[start : start + 7]))
        written, deleted = processor.take_changes()
        for key in deleted:
            checkpoint.pop(key, None)
        checkpoint.update(written)
    assert checkpoint == processor.snapshot()
    restored = StatsProcessor()
    restored.restore(checkpoint)
    assert restored.snapshot() == processor.snapshot()


def test_a_component_whose_every_event_was_rejected_is_reported_without_a_non_finite_time() -> None:
    (document,) = closed(run(tick(T0 + 1), batch([op(T0 + 1, duration_ms=-1.0)], seq=0), tick(T0 + 11)))
    assert document["components"]["parser"]["last_seen_s"] is None
    assert document["components"]["parser"]["stale"] is True
