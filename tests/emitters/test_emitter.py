"""The emitter contract, against fakeredis and the real embedded server."""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Sequence

import pytest
import redis

from emitters import ConfigError, Emitter, EmitterConfig, RedisSink
from emitters.testing import MemorySink
from schemas import OVERFLOW_NAME, CountEvent, InProgressSample, LifecycleEvent, OperationEvent, decode_batch
from schemas.names import EVENTS_MAXLEN

from tests.conftest import wait_until
from tests.emitters.helpers import delivered_batches


def redis_emitter(client: redis.Redis, **config: object) -> Emitter:
    sink = RedisSink(stream="pipepulse:events", maxlen=EVENTS_MAXLEN, client=client)
    return Emitter("parser", sink=sink, config=EmitterConfig(**config))  # type: ignore[arg-type]


def operations(events: Sequence[object]) -> list[OperationEvent]:
    return [e for e in events if isinstance(e, OperationEvent)]


def test_events_arrive_intact_in_order_with_gap_free_sequences(redis_client: redis.Redis) -> None:
    em = redis_emitter(redis_client, batch_max_events=7)
    for i in range(100):
        em.record(f"op{i % 3}", duration_ms=float(i), ok=i % 5 != 0, cache_hits=i, cache_misses=1, error_type=None if i % 5 else "Timeout")
    assert em.flush(10)
    em.close()
    batches = delivered_batches(redis_client)
    assert [b.seq for b in batches] == list(range(len(batches)))
    assert all(len(b.events) <= 7 for b in batches)
    ops = operations([e for b in batches for e in b.events])
    assert [(o.operation, o.duration_ms, o.ok, o.cache_hits, o.error_type) for o in ops] == [
        (f"op{i % 3}", float(i), i % 5 != 0, i, None if i % 5 else "Timeout") for i in range(100)
    ]
    kinds = [e.kind for b in batches for e in b.events if isinstance(e, LifecycleEvent)]
    assert kinds == ["started", "stopped"]
    assert em.stats().delivered_total == 102


def test_entries_respect_the_byte_cap(redis_client: redis.Redis) -> None:
    em = Emitter("parser", sink=RedisSink(stream="pipepulse:events", maxlen=1000, client=redis_client), max_entry_bytes=600)
    for i in range(200):
        em.record("parse_file", duration_ms=1.0, counters={"calls_detected": i})
    assert em.flush(10)
    entries: list[tuple[bytes, dict[bytes, bytes]]] = redis_client.xrange("pipepulse:events")  # type: ignore[assignment]
    sizes = [len(fields[b"b"]) for _, fields in entries]
    em.close()
    assert len(sizes) > 1 and max(sizes) <= 600
    entries = redis_client.xrange("pipepulse:events")  # type: ignore[assignment]  # again: close() sent `stopped`
    assert sum(len(decode_batch(f[b"b"]).batch.events) for _, f in entries) == 202  # with started and stopped



class CappedSink(MemorySink):
    """A transport with a payload limit of its own, as KafkaSink states one."""

    def __init__(self, max_payload_bytes: int) -> None:
        super().__init__()
        self.max_payload_bytes = max_payload_bytes


@pytest.mark.parametrize(
    ("sink", "emitter_cap", "expected_cap"),
    [(CappedSink(600), 1 << 20, 600), (CappedSink(1 << 30), 600, 600), (MemorySink(), 600, 600)],
    ids=["the sink's cap is smaller", "the emitter's cap is smaller", "a sink that states none"],
)
def test_batches_are_split_to_the_smaller_of_the_emitters_and_the_sinks_cap(sink: MemorySink, emitter_cap: int, expected_cap: int) -> None:
    em = Emitter("parser", sink=sink, max_entry_bytes=emitter_cap)
    for i in range(200):
        em.record("parse_file", duration_ms=1.0, counters={"calls_detected": i})
    assert em.flush(10)
    em.close()
    sizes = [len(payload) for payload in sink.payloads]
    assert len(sizes) > 1 and max(sizes) <= expected_cap
    assert sum(len(batch.events) for batch in sink.batches) == 202  # with started and stopped: nothing lost to the split

def test_track_records_sync_async_and_exceptions() -> None:
    sink = MemorySink()
    em = Emitter("parser", sink=sink)

    @em.track("parse_sync")
    def parse(x: int) -> int:
        return x * 2

    @em.track("parse_async")
    async def parse_async(x: int) -> int:
        await asyncio.sleep(0)
        return x + 1

    assert parse(21) == 42
    assert asyncio.run(parse_async(1)) == 2
    error = ValueError("bad file")
    with pytest.raises(ValueError) as caught:
        with em.track("parse_block") as op:
            op.cache(hits=2, misses=1)
            op.count("calls_detected", 12)
            op.count("calls_detected", 3)
            raise error
    assert caught.value is error  # re-raised unchanged
    with em.track("handled") as op:
        op.fail("Skipped")
    assert em.flush(5)
    ops = {o.operation: o for o in operations(sink.events)}
    assert ops["parse_sync"].ok and ops["parse_async"].ok
    assert ops["parse_block"].ok is False and ops["parse_block"].error_type == "ValueError"
    assert (ops["parse_block"].cache_hits, ops["parse_block"].cache_misses) == (2, 1)
    assert ops["parse_block"].counters == {"calls_detected": 15}
    assert (ops["handled"].ok, ops["handled"].error_type) == (False, "Skipped")
    assert all(o.duration_ms >= 0 for o in ops.values())
    assert parse.__name__ == "parse"
    em.close()


def test_count_and_injected_clock() -> None:
    sink = MemorySink()
    now = [1_800_000_000.0]
    em = Emitter("watcher", sink=sink, clock=lambda: now[0])
    now[0] += 5
    em.count("files_processed", 3)
    assert em.flush(5)
    counts = [e for e in sink.events if isinstance(e, CountEvent)]
    assert [(c.name, c.value, c.timestamp_s, c.component) for c in counts] == [("files_processed", 3, 1_800_000_005.0, "watcher")]
    em.close()


def test_outage_drops_oldest_counts_exactly_and_logs_once_each_way(caplog: pytest.LogCaptureFixture) -> None:
    sink = MemorySink()
    em = Emitter("parser", sink=sink, config=EmitterConfig(buffer_max_events=50, flush_interval_s=0.01))
    assert em.flush(5)
    sink.failing = True
    attempted = 0
    with caplog.at_level(logging.WARNING, logger="pipepulse.emitter"):
        for i in range(5_000):
            em.record("resolve", duration_ms=float(i))
            attempted += 1
        stats = em.stats()
        assert stats.buffered <= 50  # bounded while the server is away
        sink.failing = False
        assert em.flush(10)
    stats = em.stats()
    assert stats.dropped_total > 0
    assert stats.delivered_total - 1 == attempted - stats.dropped_total  # minus the `started` event
    delivered = [o.duration_ms for o in operations(sink.events)]
    assert delivered == sorted(delivered) and delivered[-1] == 4999.0  # the newest survive, in order
    messages = [r.getMessage() for r in caplog.records]
    assert sum("dropping the oldest" in m for m in messages) == 1
    assert sum("stopped dropping" in m for m in messages) == 1
    assert sink.batches[-1].dropped_total == stats.dropped_total  # reported in the next batch delivered
    em.close()


def test_unencodable_values_are_counted_and_the_rest_delivered() -> None:
    sink = MemorySink()
    em = Emitter("parser", sink=sink)
    em.record("ok_before", duration_ms=1.0)
    em.record("bad", duration_ms=1.0, counters={"x": object()})  # type: ignore[dict-item]
    em.record("ok_after", duration_ms=1.0)
    assert em.flush(5)
    assert [o.operation for o in operations(sink.events)] == ["ok_before", "ok_after"]
    assert em.stats().invalid_total == 1
    assert sink.batches[-1].invalid_total == 1
    em.close()


def test_operation_names_are_capped_per_producer() -> None:
    sink = MemorySink()
    em = Emitter("parser", sink=sink, max_names=3)
    for i in range(10):
        em.record(f"user-{i}", duration_ms=1.0)
    with em.track("user-0") as op:
        op.count("calls-of-user-11")
    em.count("files-of-user-12")
    assert em.flush(5)
    ops = operations(sink.events)
    assert [o.operation for o in ops] == ["user-0", "user-1", "user-2"] + [OVERFLOW_NAME] * 7 + ["user-0"]
    assert ops[-1].counters == {OVERFLOW_NAME: 1}
    assert [e.name for e in sink.events if isinstance(e, CountEvent)] == [OVERFLOW_NAME]
    assert em.stats().names_overflow_total == 9
    em.close()


def test_a_closed_emitter_and_an_unreachable_url_never_raise() -> None:
    em = Emitter("parser", redis_url="redis://127.0.0.1:1/0", config=EmitterConfig(socket_timeout_s=0.2))
    em.record("x", duration_ms=1.0)
    with em.track("y"):
        pass
    assert em.flush(0.3) is False
    assert em.close(timeout_s=0.3) is False
    em.record("after_close", duration_ms=1.0)
    assert em.stats().delivered_total == 0


def test_from_env_names_the_bad_variable() -> None:
    with pytest.raises(ConfigError, match="PIPEPULSE_BUFFER_MAX_EVENTS"):
        Emitter.from_env("parser", environ={"PIPEPULSE_BUFFER_MAX_EVENTS": "lots"})
    with pytest.raises(ConfigError, match="flush_interval_s"):
        Emitter.from_env("parser", environ={"PIPEPULSE_FLUSH_INTERVAL_S": "0"})
    em = Emitter.from_env("parser", environ={"PIPEPULSE_REDIS_URL": "redis://127.0.0.1:1/0", "PIPEPULSE_PREFIX": "acme"}, sink=MemorySink())
    assert (em.config.redis_url, em.config.prefix) == ("redis://127.0.0.1:1/0", "acme")
    em.close()


def test_heartbeats_follow_the_clock() -> None:
    sink = MemorySink()
    now = [1_800_000_000.0]
    em = Emitter("parser", sink=sink, clock=lambda: now[0], config=EmitterConfig(heartbeat_interval_s=10.0, flush_interval_s=0.01))
    assert em.flush(5)
    assert not any(isinstance(e, LifecycleEvent) and e.kind == "heartbeat" for e in sink.events)
    now[0] += 11
    wait_until(lambda: any(isinstance(e, LifecycleEvent) and e.kind == "heartbeat" for e in sink.events), what="a heartbeat")
    em.close()


# -- calls in progress (the in-progress gauge)


def in_progress_samples(sink: MemorySink, operation: str) -> list[tuple[int, int]]:
    return [(e.in_progress, e.peak) for e in sink.events if isinstance(e, InProgressSample) and e.operation == operation]


def test_calls_in_progress_are_counted_reported_and_their_return_to_zero_reported_once() -> None:
    """(3, 3) while they run; then (0, 3), the interval's peak, and (0, 0) once: the processor then forgets the operation."""
    sink = MemorySink()
    em = Emitter("extractor", sink=sink, config=EmitterConfig(flush_interval_s=0.01, in_progress_interval_s=0.05))
    release = threading.Event()
    inside = threading.Barrier(4)

    def call(fails: bool) -> None:
        try:
            with em.track("extract"):
                inside.wait()
                release.wait()
                if fails:
                    raise ValueError("the call fails: it still leaves the gauge")
        except ValueError:
            pass

    threads = [threading.Thread(target=call, args=(i == 0,)) for i in range(3)]
    for thread in threads:
        thread.start()
    inside.wait()
    assert em.in_progress() == {"extract": 3}
    wait_until(lambda: (3, 3) in in_progress_samples(sink, "extract"), what="a report of 3 calls in progress")
    release.set()
    for thread in threads:
        thread.join()
    assert em.in_progress() == {}
    wait_until(lambda: in_progress_samples(sink, "extract")[-1][0] == 0, what="the return to zero")
    wait_until(lambda: in_progress_samples(sink, "extract")[-1] == (0, 0), what="the peak's end reported too")
    with em.track("probe"):  # a later report: the zeros are not repeated in it
        wait_until(lambda: in_progress_samples(sink, "probe"), what="a later report")
    samples = in_progress_samples(sink, "extract")
    assert [s for s in samples if s[0] == 0] == [(0, 3), (0, 0)]
    em.close()


def test_an_async_tracked_function_is_in_progress_while_it_awaits() -> None:
    sink = MemorySink()
    em = Emitter("extractor", sink=sink)

    @em.track("fetch")
    async def fetch(gate: asyncio.Event) -> None:
        await gate.wait()

    async def main() -> dict[str, int]:
        gate = asyncio.Event()
        tasks = [asyncio.create_task(fetch(gate)) for _ in range(2)]
        await asyncio.sleep(0)  # lets both tasks enter the tracked call
        running = em.in_progress()
        gate.set()
        await asyncio.gather(*tasks)
        return running

    assert asyncio.run(main()) == {"fetch": 2}
    assert em.in_progress() == {}
    em.close()
