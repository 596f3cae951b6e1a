"""The Faust engine's app: the only module that imports faust.

Two agents. `forward` reads the `events` topic (partitioned by component,
spread over the workers) and forwards each record, with its partition and
offset, to the one-partition `ordered` topic. `fold` reads `ordered` and runs
the same `MonitorProcessor` as the Redis runtime (`fold.OrderedFold`), its
state in the `state` table. The leader sends a tick to every events partition
each interval.

Faust runs at least once: it flushes what an agent sent (forwards, table
changes) before it commits the offsets consumed, so nothing is lost, and a
record may be processed again after a failover. What makes the effect exactly
once is ours: batches are deduplicated by (producer_id, seq), ticks by time,
ordered records by the offset the state holds, and Redis writes by the offset
Redis holds. Faust's own exactly-once mode is not used: its transactions put
stage 1's forwards in the ordered partition's transaction, which commits only
when stage 2 consumes, which it cannot until that transaction commits.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, AsyncIterator, Callable

import faust
from faust.types import TP
from aiokafka import AIOKafkaConsumer, TopicPartition
import redis

from schemas.names import Names

from processors.contract import Processor
from processors.errors import ProcessorError
from processors.scaleout.fold import OrderedFold
from processors.scaleout.records import bootstrap
from processors.scaleout.ordering import KIND_HEADER, TICK_KIND, forwarded, tick_value

log = logging.getLogger("pipepulse.faust")
# Above any record sent: batches of at most 1,000,000 bytes (emitters.kafka_sink) forwarded with a few bytes more,
# and state chunks of 512 KiB. The broker's message.max.bytes is the limit that counts.
MAX_RECORD_BYTES = 2 * 1024 * 1024


@dataclass(frozen=True, slots=True, kw_only=True)
class EngineSettings:
    kafka_url: str  # kafka://host:port[,host:port]
    redis_url: str  # where the snapshots go, as with the Redis runtime
    names: Names
    processor_factory: Callable[[], Processor]
    data_dir: Path  # Faust's own files (tables are in memory, recovered from their changelogs)
    partitions: int = 8  # of the events topic, when the workers create it
    tick_interval_s: float | None = 1.0  # None: no ticks (a log that carries its own, as in the tests)
    instance_id: str | None = None  # static group membership: a restarted worker takes its partitions back at once
    batch_max: int = 256  # ordered records folded and committed together
    batch_within_s: float = 0.05
    socket_timeout_s: float = 5.0


class OnePartitionTable(faust.Table[str, bytes]):
    """A table of one partition: its changelog partition is 0, so writes need neither the current event
    (the fold takes events in batches, where Faust sets none) nor the producer's partitioner."""

    def partition_for_key(self, key: Any) -> int:
        return 0


def broker_urls(kafka_url: str) -> list[str]:
    """Faust's form of `kafka://host:port[,host:port]`."""
    return [f"kafka://{host}" for host in bootstrap(kafka_url).split(",")]


def build_app(settings: EngineSettings) -> faust.App:
    names = settings.names
    app = faust.App(
        f"{names.prefix}-monitor",  # the consumer group; the table's changelog topic is named after it
        broker=broker_urls(settings.kafka_url),
        store="memory://",
        processing_guarantee="at_least_once",  # exactly-once effects are built on top (see above)
        web_enabled=False,
        datadir=str(settings.data_dir),
        topic_partitions=settings.partitions,
        consumer_group_instance_id=settings.instance_id,
        Table=OnePartitionTable,
        table_standby_replicas=0,  # a standby promoted to active stalled its recovery (faust-streaming 0.15.3 on noida-db); the changelog is read afresh instead
        producer_max_request_size=MAX_RECORD_BYTES,
        consumer_max_fetch_size=4 * MAX_RECORD_BYTES,
    )
    events = app.topic(names.topic("events"), key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw", partitions=settings.partitions, internal=True)
    ordered = app.topic(names.topic("ordered"), value_type=bytes, value_serializer="raw", partitions=1, internal=True)
    state = app.Table("state", key_type=str, value_type=bytes, partitions=1)

    @app.agent(events, sink=[ordered])
    async def forward(stream: faust.StreamT[bytes]) -> AsyncIterator[bytes]:
        async for event in stream.events():
            message = event.message
            is_tick = any(k == KIND_HEADER and bytes(v) == TICK_KIND for k, v in _headers(message.headers))
            yield forwarded(message.partition, message.offset, is_tick, message.value)

    fold: list[OrderedFold] = []  # built on the first records, after the table has recovered

    @app.agent(ordered)
    async def monitor(stream: faust.StreamT[bytes]) -> AsyncIterator[None]:
        client = redis.Redis.from_url(settings.redis_url, socket_timeout=settings.socket_timeout_s)
        async for batch in stream.take_events(settings.batch_max, within=settings.batch_within_s):  # type: ignore[attr-defined]  # in StreamT's implementation, not its stub
            if not fold:
                fold.append(OrderedFold(processor_factory=settings.processor_factory, state=state, client=client, names=names))
            records = [(event.message.offset, event.value) for event in batch]
            fold[0].highwater = _highwater(app, batch[-1].message.tp)
            log.debug("folding ordered records %d..%d", records[0][0], records[-1][0])
            await _fold_retrying(fold[0], records)
            wanted = fold[0].wanted
            if wanted is not None:
                # Faust resumed past what the table holds (its commit can run ahead of a changelog still in its
                # buffer): the records in between are read from the topic itself, then those refused.
                gap = await _read_range(settings.kafka_url, ordered.get_topic_name(), wanted, records[-1][0])
                log.warning("read ordered records %d..%d back from the topic: Faust resumed past them", wanted, records[-1][0])
                await _fold_retrying(fold[0], gap)
                if fold[0].wanted is not None:  # the topic itself has a hole: folding on would lose what was in it
                    raise ProcessorError(f"{ordered.get_topic_name()} has no record at offset {fold[0].wanted}")
            yield None

    if settings.tick_interval_s is not None:

        @app.timer(settings.tick_interval_s, on_leader=True)  # type: ignore[untyped-decorator]
        async def tick() -> None:
            """The runtime's clock, not the processors': stream time comes from these ticks and the events."""
            partitions = app.consumer.topic_partitions(events.get_topic_name()) or settings.partitions
            value = tick_value(time.time(), partitions)
            for partition in range(partitions):
                await events.send(value=value, partition=partition, headers=[(KIND_HEADER, TICK_KIND)])

    return app


def _highwater(app: faust.App, tp: TP) -> int | None:
    """The partition's end offset, for the lag; unknown (None) when the consumer cannot tell (not running, as under
    the test context, or the partition revoked mid-batch): a figure is never a reason to fail a fold."""
    try:
        return app.consumer.highwater(tp)
    except Exception:  # noqa: BLE001 - aiokafka asserts on a revoked partition; Faust raises ConsumerNotStarted
        return None


async def _fold_retrying(fold: OrderedFold, records: list[tuple[int, bytes]]) -> None:
    """Redis down: the records wait (and the topic holds the rest) until it is back."""
    failures = 0
    while True:
        try:
            fold.fold(records)
            return
        except redis.RedisError as exc:
            failures += 1
            if failures == 1:
                log.warning("writing snapshots to Redis failed: %s; retrying with back-off", exc)
            await asyncio.sleep(min(5.0, 0.05 * 2**failures))


async def _read_range(kafka_url: str, topic: str, first: int, last: int) -> list[tuple[int, bytes]]:
    """Records `first..last` of a one-partition topic, read directly (no group, nothing committed)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap(kafka_url), enable_auto_commit=False)
    await consumer.start()
    try:
        partition = TopicPartition(topic, 0)
        consumer.assign([partition])
        consumer.seek(partition, first)
        records: list[tuple[int, bytes]] = []
        while not records or records[-1][0] < last:
            for message in (await consumer.getmany(partition, timeout_ms=1000)).get(partition, []):
                if not records and message.offset != first:
                    raise ProcessorError(f"ordered records from {first} to {message.offset - 1} are gone from {topic} (its retention): the state cannot be rebuilt past them")
                if message.offset <= last:
                    records.append((message.offset, message.value))
        return records
    finally:
        await consumer.stop()


def _headers(headers: Any) -> list[tuple[str, bytes]]:
    """Kafka headers arrive as a list of pairs or a mapping, depending on the driver."""
    if not headers:
        return []
    return list(headers.items()) if hasattr(headers, "items") else list(headers)


def run_worker(settings: EngineSettings, loglevel: str) -> None:
    """Run a Faust worker in the foreground until SIGTERM or Ctrl-C (Faust's worker handles both)."""
    worker = faust.Worker(build_app(settings), loglevel=loglevel, quiet=True, redirect_stdouts=False)
    worker.execute_from_commandline()
