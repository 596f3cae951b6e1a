"""The Faust engine's pure parts without a broker: the tick merge, and the ordered fold against fakeredis.

The fold must write exactly what the Redis runtime writes for the same log,
however its records are batched, re-delivered after a failover, or cut off
while its state was being written.
"""

from __future__ import annotations

import json
import random
from typing import Any, Sequence

import fakeredis
import pytest
import redis

from schemas.checks import Limits
from schemas.codec import PAYLOAD_FIELD, TICK_FIELD, pack, unpack
from schemas.errors import RejectedEntry
from schemas.names import Names

from processors.contract import BatchItem, Item, Output
from processors.intake import Entry, prepare
from processors.ledger import Ledger
from processors.monitor import MonitorProcessor, MonitorSettings
from processors.rules import load_rules
from processors.runtime import LeaseLost, applied_state, write_outputs
from processors.scaleout.fold import OrderedFold
from processors.scaleout.statelog import StateLog
from processors.scaleout.ordering import Reorder, forwarded, tick_value

from tests.scaleout_log import COMPONENTS, Record, canonical, derived, per_partition, seeded_log

SETTINGS = MonitorSettings(rules=load_rules(None))
LOG = seeded_log(seed=7, seconds=70)
COUNTERS = {"entries_total": len(LOG), "events_total": 20 * 5 * 70, "ticks_total": 70, "duplicate_batches_total": 0, "missing_batches_total": 0, "dead_letters_total": 0, "trimmed_entries_total": 0}


def ordered_records(log: Sequence[Record]) -> list[tuple[int, bytes]]:
    """The log as stage 1 forwards it from one partition: (ordered offset, value)."""
    return [(i, forwarded(0, i, key is None, tick_value(value, 1) if key is None else value)) for i, (key, value) in enumerate(log)]  # type: ignore[arg-type]


def redis_runtime(log: Sequence[Record], names: Names, chunk: int = 64) -> redis.Redis:
    """What the Redis runtime writes for the log: its entries, through the same intake and monitor."""
    client = fakeredis.FakeRedis()
    entries: list[Entry] = [(f"{i}-0".encode(), {TICK_FIELD: pack(v)} if k is None else {PAYLOAD_FIELD: v}) for i, (k, v) in enumerate(log)]  # type: ignore[dict-item]
    monitor, ledger = MonitorProcessor(SETTINGS), Ledger()
    for start in range(0, len(entries), chunk):
        write_outputs(client, names, monitor.apply(prepare(entries[start : start + chunk], ledger, Limits()).items))
    return client


def fold_all(fold: OrderedFold, records: Sequence[tuple[int, bytes]], batch: int) -> None:
    for start in range(0, len(records), batch):
        fold.fold(records[start : start + batch])


def new_fold(client: redis.Redis, state: dict[str, bytes] | StateLog, names: Names, factory: Any = None) -> OrderedFold:
    return OrderedFold(processor_factory=factory or (lambda: MonitorProcessor(SETTINGS)), state=state, client=client, names=names)


@pytest.fixture(scope="module")
def reference() -> dict[str, Any]:
    view = derived(redis_runtime(LOG, Names("x")), Names("x"))
    fired = [json.loads(e[b"json"]) if b"json" in e else e for e in view["stream alerts"]]
    assert fired and view["stream stats"], "the seeded log must close windows and fire alerts, or the comparisons prove little"
    return view


# -- the one order


def batch_record(offset: int, partition: int, source_offset: int) -> tuple[int, bytes]:
    return offset, forwarded(partition, source_offset, False, f"b{partition}.{source_offset}".encode())


def tick_record(offset: int, partition: int, source_offset: int, time_s: float, partitions: int) -> tuple[int, bytes]:
    return offset, forwarded(partition, source_offset, True, tick_value(time_s, partitions))


def released(reorder: Reorder, records: Sequence[tuple[int, bytes]]) -> list[str]:
    out = []
    for offset, value in records:
        for entry_id, fields in reorder.push(offset, value, Limits()):
            out.append(fields[PAYLOAD_FIELD].decode() if PAYLOAD_FIELD in fields else f"tick {unpack(fields[TICK_FIELD])}")
    return out


def test_records_wait_for_the_slowest_partitions_tick_then_go_partition_by_partition() -> None:
    T = 1_800_000_000.0
    records = [
        batch_record(0, 1, 0),
        tick_record(1, 1, 1, T + 1, 2),  # partition 0 has not ticked: nothing goes
        batch_record(2, 1, 2),  # after partition 1's tick: waits for the next
        batch_record(3, 0, 0),
        tick_record(4, 0, 1, T + 1, 2),  # both at T+1: what came before each one's tick goes
        tick_record(5, 0, 2, T + 2, 2),  # partition 1 still at T+1
        tick_record(6, 1, 3, T + 2, 2),
    ]
    assert released(Reorder(), records) == ["b0.0", "b1.0", f"tick {T + 1}", "b1.2", f"tick {T + 2}"]


def test_a_partition_that_passes_two_ticks_at_once_releases_them_epoch_by_epoch() -> None:
    T = 1_800_000_000.0
    records = [
        batch_record(0, 0, 0), tick_record(1, 0, 1, T + 1, 2), batch_record(2, 0, 2), tick_record(3, 0, 3, T + 2, 2),
        batch_record(4, 1, 0), tick_record(5, 1, 1, T + 1, 2), batch_record(6, 1, 2), tick_record(7, 1, 3, T + 2, 2),
    ]  # partition 1 arrives late, with both its ticks
    assert released(Reorder(), records) == ["b0.0", "b1.0", f"tick {T + 1}", "b0.2", "b1.2", f"tick {T + 2}"]


def test_an_old_tick_moves_nothing_and_a_restore_loses_nothing_queued() -> None:
    T = 1_800_000_000.0
    reorder = Reorder()
    assert released(reorder, [tick_record(0, 0, 0, T + 1, 1), batch_record(1, 0, 1)]) == [f"tick {T + 1}"]
    restored = Reorder.restore(reorder.snapshot())
    assert released(restored, [tick_record(2, 0, 2, T + 1, 1)]) == []  # delivered again: time does not move
    assert released(restored, [tick_record(3, 0, 3, T + 2, 2)]) == []  # a second partition now: time waits for it
    assert released(restored, [tick_record(4, 1, 0, T + 3, 2)]) == ["b0.1", f"tick {T + 2}"]


def test_a_record_that_is_not_stage_ones_is_rejected_with_its_source() -> None:
    with pytest.raises(RejectedEntry, match="tick 3-41: expected"):
        Reorder().push(0, forwarded(3, 41, True, pack("noon")), Limits())
    with pytest.raises(RejectedEntry, match="timestamp_out_of_range"):
        Reorder().push(0, forwarded(0, 1, True, tick_value(5.0, 1)), Limits())
    with pytest.raises(RejectedEntry, match="not a record forwarded by stage 1"):
        Reorder().push(0, pack([1, 2]), Limits())


# -- the fold against what the Redis runtime writes


@pytest.mark.parametrize("batch", [1, 7, 256])
def test_the_fold_writes_what_the_redis_runtime_writes(reference: dict[str, Any], batch: int) -> None:
    client, names = fakeredis.FakeRedis(), Names("x")
    fold = new_fold(client, {}, names)
    fold_all(fold, ordered_records(LOG), batch)
    assert derived(client, names) == reference
    assert applied_state(client, names, "faust") == (len(LOG) - 1, COUNTERS)


@pytest.mark.parametrize("seed", [1, 2])
def test_partitions_interleaved_by_chance_are_folded_in_the_one_order(seed: int) -> None:
    """Three partitions forwarded in a random interleaving (each in its own order) give what the Redis
    runtime gives for the canonical order; so any two interleavings give the same outputs."""
    partition_of = {c: i % 3 for i, c in enumerate(COMPONENTS)}.__getitem__
    held = per_partition(LOG, partition_of, 3)
    rng, cursors, records = random.Random(seed), [0, 0, 0], []
    while any(cursors[p] < len(held[p]) for p in range(3)):
        p = rng.choice([p for p in range(3) if cursors[p] < len(held[p])])
        key, value = held[p][cursors[p]]
        records.append((len(records), forwarded(p, cursors[p], key is None, tick_value(value, 3) if key is None else value)))  # type: ignore[arg-type]
        cursors[p] += 1
    client, names = fakeredis.FakeRedis(), Names("x")
    fold_all(new_fold(client, {}, names), records, 16)
    expected = derived(redis_runtime(canonical(LOG, partition_of), Names("x")), Names("x"))
    assert expected["stream alerts"] and derived(client, names) == expected


@pytest.mark.parametrize("resume_from", [0, 100, 299])
def test_records_delivered_again_after_a_failover_change_nothing(reference: dict[str, Any], resume_from: int) -> None:
    client, names, state = fakeredis.FakeRedis(), Names("x"), {}  # type: ignore[var-annotated]
    records = ordered_records(LOG)
    fold_all(new_fold(client, state, names), records[:300], 16)
    # A new worker with the recovered table; Kafka hands it everything after its last committed offset.
    fold_all(new_fold(client, state, names), records[resume_from:], 16)
    assert derived(client, names) == reference
    assert applied_state(client, names, "faust")[1] == COUNTERS  # nothing counted twice either


def test_a_table_behind_redis_recomputes_without_writing_twice(reference: dict[str, Any]) -> None:
    """The worker wrote to Redis, then died before its table changes reached the changelog."""
    client, names, state = fakeredis.FakeRedis(), Names("x"), {}  # type: ignore[var-annotated]
    records = ordered_records(LOG)
    fold_all(new_fold(client, state, names), records[:150], 10)
    table_then = dict(state)
    fold_all(new_fold(client, state, names), records[150:230], 10)
    # Replaced, from the older table; its batch [227..237] straddles what Redis holds (to 229), with a tick at 227.
    fold_all(new_fold(client, table_then, names), records[150:], 11)
    assert derived(client, names) == reference


class CutOff(dict[str, bytes]):
    """A table whose changelog stops reaching the broker after its nth record (mid-fold, between chunks)."""

    def __init__(self, after_records: int) -> None:
        super().__init__()
        self.left = after_records
        self.recovered: dict[str, bytes] | None = None

    def __setitem__(self, key: str, value: bytes) -> None:
        super().__setitem__(key, value)
        self.left -= 1
        if self.left == 0:
            self.recovered = dict(self)  # what a replacement reads back from the changelog

    def __delitem__(self, key: str) -> None:
        super().__delitem__(key)
        self.left -= 1
        if self.left == 0:
            self.recovered = dict(self)


@pytest.mark.parametrize("after_records", [1, 2, 3, 157, 158, 301])
def test_a_worker_cut_off_while_writing_its_state_recovers_whole_folds_only(reference: dict[str, Any], after_records: int) -> None:
    """Chunks of 300 bytes: every fold's change spans several records, then its head; any cut loses only whole folds."""
    client, names, state = fakeredis.FakeRedis(), Names("x"), CutOff(after_records)
    records = ordered_records(LOG)
    fold_all(new_fold(client, StateLog(state, chunk_bytes=300), names), records[:200], 8)
    assert state.recovered is not None
    recovered = StateLog(state.recovered, chunk_bytes=300)
    fold_all(new_fold(client, recovered, names), records[recovered.offset + 1 :], 8)
    assert derived(client, names) == reference
    assert applied_state(client, names, "faust")[1] == COUNTERS


def test_snapshots_replace_the_deltas_and_a_restart_reads_them(reference: dict[str, Any]) -> None:
    client, names, table = fakeredis.FakeRedis(), Names("x"), {}  # type: ignore[var-annotated]
    records = ordered_records(LOG)
    fold_all(new_fold(client, StateLog(table, snapshot_after_bytes=50_000), names), records[:250], 5)
    head = StateLog(table).head()
    assert head["serial"] > 2 * len(head["deltas"]), "snapshots must have replaced most deltas"
    assert set(table) == {"head", *(k for chunks in head["snapshot"] + head["deltas"] for k in chunks)}  # nothing left behind
    fold_all(new_fold(client, StateLog(table, snapshot_after_bytes=50_000), names), records[250:], 5)
    assert derived(client, names) == reference


def test_the_head_stays_small_however_small_the_deltas() -> None:
    """Idle folds add tiny deltas; the head names each one, so their count must bring on a snapshot too."""
    client, names, table = fakeredis.FakeRedis(), Names("x"), {}  # type: ignore[var-annotated]
    fold_all(new_fold(client, StateLog(table, snapshot_after_deltas=16), names), ordered_records(LOG), 1)
    head = StateLog(table).head()
    assert head["serial"] == len(LOG) and len(head["deltas"]) < 16 and len(table["head"]) < 1000


def test_a_writer_that_lost_its_partition_cannot_write_over_the_new_owner(reference: dict[str, Any]) -> None:
    """Two folds on one Redis: the one that last saw Redis at an older offset is refused, not written twice."""
    client, names = fakeredis.FakeRedis(), Names("x")
    records = ordered_records(LOG)
    owner, zombie = new_fold(client, {}, names), new_fold(client, {}, names)
    zombie.fold(records[:10])
    fold_all(owner, records[:100], 10)
    with pytest.raises(LeaseLost, match="another writer"):
        zombie.fold(records[10:150])
    fold_all(owner, records[100:], 10)
    assert derived(client, names) == reference


def test_records_past_a_gap_wait_for_the_gap_to_be_read(reference: dict[str, Any]) -> None:
    """A consumer that skipped ahead over a rebalance (faust-streaming #221) must not make the fold skip."""
    client, names = fakeredis.FakeRedis(), Names("x")
    records = ordered_records(LOG)
    fold = new_fold(client, {}, names)
    fold_all(fold, records[:100], 10)
    fold.fold(records[120:130])
    assert fold.wanted == 100 and fold.offset == 99
    fold.fold(records[100:125])  # the seek back: the gap, then what came before
    assert fold.wanted is None and fold.offset == 124
    fold_all(fold, records[125:], 10)
    assert derived(client, names) == reference


def test_the_runtime_figures_count_the_ordered_records_not_yet_folded() -> None:
    """`pipepulse status` and /metrics read the lag from here, as they do the Redis runtime's."""
    client, names = fakeredis.FakeRedis(), Names("x")
    records = ordered_records(LOG)
    fold = new_fold(client, {}, names)
    fold.fold(records[:50])
    assert json.loads(client.hget(names.runtime, "monitor"))["lag_entries"] is None  # type: ignore[arg-type]  # the end offset unknown
    fold.metrics.published_at = float("-inf")  # the next fold reports again, without waiting out the interval
    fold.highwater = len(records)
    fold.fold(records[50:100])
    report = json.loads(client.hget(names.runtime, "monitor"))  # type: ignore[arg-type]
    assert (report["lag_entries"], report["engine"]) == (len(records) - 100, "faust")


def test_a_batch_forwarded_twice_is_counted_once(reference: dict[str, Any]) -> None:
    """Stage 1 is at least once: after its failover it forwards a partition's records again."""
    records = ordered_records(LOG)
    values = [value for _, value in records[:101] + records[100:120] + records[101:]]  # 100..119 re-forwarded after 100
    shifted = list(enumerate(values))
    client, names = fakeredis.FakeRedis(), Names("x")
    fold_all(new_fold(client, {}, names), shifted, 32)
    assert derived(client, names) == reference
    batches = sum(1 for key, _ in LOG[100:120] if key is not None)
    assert batches == 16  # and 4 ticks, which move no time the second time
    assert applied_state(client, names, "faust")[1]["duplicate_batches_total"] == batches


class PoisonedMonitor(MonitorProcessor):
    """The real monitor, except that it raises on one component's batches."""

    def apply(self, items: Sequence[Item]) -> list[Output]:
        if any(isinstance(i, BatchItem) and i.decoded.envelope.component == "cache" and i.decoded.envelope.seq == 30 for i in items):
            raise RuntimeError("cannot digest cache #30")
        return super().apply(items)


def test_a_poison_record_is_dead_lettered_and_the_rest_folded() -> None:
    records = ordered_records(LOG)
    client, names = fakeredis.FakeRedis(), Names("x")
    fold_all(new_fold(client, {}, names, lambda: PoisonedMonitor(SETTINGS)), records, 50)
    dead = [fields for _, fields in client.xrange(names.dead)]  # type: ignore[union-attr]
    assert len(dead) == 1
    assert (dead[0][b"reason"], dead[0][b"detail"], dead[0][b"processor"]) == (b"processor_error", b"RuntimeError: cannot digest cache #30", b"monitor")
    poisoned = next(i for i, (key, _) in enumerate(LOG) if key == "cache" and sum(1 for k, _ in LOG[: i + 1] if k == "cache") == 31)
    assert dead[0][b"entry_id"] == f"0-{poisoned}".encode()  # the source: events partition 0, its offset
    offset, counters = applied_state(client, names, "faust")
    assert offset == len(LOG) - 1 and counters["dead_letters_total"] == 1
    assert counters["events_total"] == 20 * 5 * 70 - 20


def test_a_record_with_no_value_is_dead_lettered_and_nothing_else_changes(reference: dict[str, Any]) -> None:
    """A tombstone on the events topic (or any producer's record without bytes) is forwarded like any record."""
    values = [value for _, value in ordered_records(LOG)]
    values.insert(50, forwarded(0, 10_000, False, None))  # type: ignore[arg-type]
    client, names = fakeredis.FakeRedis(), Names("x")
    fold_all(new_fold(client, {}, names), list(enumerate(values)), 16)
    dead = [fields for _, fields in client.xrange(names.dead)]  # type: ignore[union-attr]
    assert [(d[b"reason"], d[b"entry_id"]) for d in dead] == [(b"wrong_type", b"ordered-50")]
    assert derived(client, names) == reference


def test_a_malformed_tick_is_dead_lettered_and_time_goes_on() -> None:
    records = ordered_records(LOG[:30])
    bad = (len(records), forwarded(0, 999, True, b"\xc1"))
    client, names = fakeredis.FakeRedis(), Names("x")
    fold_all(new_fold(client, {}, names), [*records, bad], 8)
    dead = [fields for _, fields in client.xrange(names.dead)]  # type: ignore[union-attr]
    assert [(d[b"reason"], d[b"entry_id"]) for d in dead] == [(b"malformed_msgpack", f"ordered-{len(records)}".encode())]
    assert applied_state(client, names, "faust")[0] == len(records)
