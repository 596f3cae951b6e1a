"""The emitters' Kafka sink against a real Kafka-protocol broker: same API, batches keyed by component, and
with the broker down, nothing blocks and every event is delivered or counted as dropped."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import NamedTuple

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from schemas import Batch, OperationEvent, decode_batch
from schemas.names import Names

from emitters import ConfigError, Emitter, EmitterConfig
from emitters.kafka_sink import MAX_PAYLOAD_BYTES, bootstrap_servers

from tests.conftest import wait_until
from tests.kafka_broker import KafkaBroker

PARTITIONS = 4


async def _create_topic(bootstrap: str, topic: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, num_partitions=PARTITIONS, replication_factor=1)])
    finally:
        await admin.close()


class Received(NamedTuple):
    partition: int
    key: bytes
    batch: Batch
    value_bytes: int


async def _records(bootstrap: str, topic: str, expected_events: int) -> list[Received]:
    """Every record, read until `expected_events` events arrived (or 20 s passed)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        await consumer.topics()  # fetches the metadata: the topic's partitions, whether created by us (4) or by the first send (1)
        partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        found: list[Received] = []
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 20
        while sum(len(r.batch.events) for r in found) < expected_events and loop.time() < deadline:
            for tp, messages in (await consumer.getmany(timeout_ms=500)).items():
                found += [Received(tp.partition, m.key, decode_batch(m.value).batch, len(m.value)) for m in messages]
        return found
    finally:
        await consumer.stop()


def test_batches_arrive_intact_keyed_by_component_in_order_per_partition(kafka_broker: KafkaBroker, prefix: str) -> None:
    topic = Names(prefix).topic("events")
    asyncio.run(_create_topic(kafka_broker.bootstrap, topic))
    config = EmitterConfig(redis_url=kafka_broker.url, prefix=prefix, batch_max_events=25)
    emitters = [Emitter(component, config=config) for component in ("parser", "extractor", "detector")]
    for i in range(300):
        for em in emitters:
            em.record("step", duration_ms=float(i), ok=i % 7 != 0, error_type=None if i % 7 else "E")
    for em in emitters:
        assert em.flush(10)
        em.close()
    records = asyncio.run(_records(kafka_broker.bootstrap, topic, 3 * (300 + 2)))  # each: started, 300 operations, stopped
    by_component: dict[str, set[int]] = {}
    for partition, key, batch, _ in records:
        assert key == batch.component.encode()
        by_component.setdefault(batch.component, set()).add(partition)
    assert {c: len(p) for c, p in by_component.items()} == {"parser": 1, "extractor": 1, "detector": 1}  # one partition each
    for component in by_component:
        batches = [r.batch for r in records if r.batch.component == component]
        assert [b.seq for b in batches] == list(range(len(batches)))  # in order, gap-free, no duplicate
        durations = [e.duration_ms for b in batches for e in b.events if isinstance(e, OperationEvent)]
        assert durations == [float(i) for i in range(300)]


def test_with_the_broker_down_nothing_blocks_drops_are_counted_and_delivery_resumes(tmp_path: Path, prefix: str) -> None:
    broker = KafkaBroker(tmp_path / "later")  # its port is chosen, not yet served
    config = EmitterConfig(redis_url=broker.url, prefix=prefix, buffer_max_events=100, socket_timeout_s=0.5)
    em = Emitter("parser", config=config)
    for i in range(1000):
        em.record("step", duration_ms=1.0)
    wait_until(lambda: em.stats().send_errors_total >= 1, what="a failed send")
    assert em.stats().dropped_total >= 1000 - 100  # bounded: the oldest went first
    broker.start()
    try:
        assert em.flush(20)
        em.close()
        stats = em.stats()
        records = asyncio.run(_records(broker.bootstrap, Names(prefix).topic("events"), stats.delivered_total))
        events = sum(len(r.batch.events) for r in records)
        assert events == stats.delivered_total
        assert stats.delivered_total + stats.dropped_total == 1000 + 2  # every event delivered or counted, started and stopped included
    finally:
        broker.stop()


def test_a_kafka_url_must_name_its_servers() -> None:
    assert bootstrap_servers("kafka://a:9092,b:9092") == "a:9092,b:9092"
    for bad in ("kafka://", "kafka://host:9092/topic", "redis://host:6379"):
        with pytest.raises(ConfigError):
            bootstrap_servers(bad)
    with pytest.raises(ConfigError):
        Emitter("parser", redis_url="kafka:///nowhere")


def test_events_url_sends_batches_to_kafka_while_redis_url_stays(kafka_broker: KafkaBroker, prefix: str) -> None:
    """For a program that also reads control settings from Redis: only its batches move to Kafka."""
    topic = Names(prefix).topic("events")
    asyncio.run(_create_topic(kafka_broker.bootstrap, topic))
    emitter = Emitter("parser", config=EmitterConfig(redis_url="redis://127.0.0.1:9/0", events_url=kafka_broker.url, prefix=prefix))
    emitter.record("parse", 1.5)
    emitter.close()
    assert emitter.stats().delivered_total >= 1 and emitter.stats().dropped_total == 0
    records = asyncio.run(_records(kafka_broker.bootstrap, topic, 1))
    assert {r.key for r in records} == {b"parser"} and any(isinstance(e, OperationEvent) for r in records for e in r.batch.events)
    with pytest.raises(ConfigError):
        Emitter("parser", config=EmitterConfig(events_url="kafka:///nowhere"))


def test_no_record_is_bigger_than_a_broker_accepts_by_default(kafka_broker: KafkaBroker, prefix: str) -> None:
    """Batches the processors would take (up to 1 MiB) are split to leave a margin under a broker's record limit."""
    assert MAX_PAYLOAD_BYTES + len(b"extractor") + 256 <= 1_048_588  # Kafka's default message.max.bytes; 256 B for the batch's own overhead
    events = 720  # of about 1.43 kB each: batches of about 1.03 MB, between our cap and 1 MiB
    counters = {f"counter_{n:02d}_of_a_long_name": float(n) for n in range(40)}
    em = Emitter("extractor", config=EmitterConfig(redis_url=kafka_broker.url, prefix=prefix, batch_max_events=events, flush_interval_s=60))
    for i in range(2 * events):
        em.record("extract", float(i), counters=counters)
    assert em.flush(20)
    em.close()
    assert em.stats().delivered_total == 2 * events + 2 and em.stats().invalid_total == 0
    records = asyncio.run(_records(kafka_broker.bootstrap, Names(prefix).topic("events"), 2 * events + 2))
    assert sum(len(r.batch.events) for r in records) == 2 * events + 2
    assert max(r.value_bytes for r in records) <= MAX_PAYLOAD_BYTES
    assert max(r.value_bytes for r in records) > MAX_PAYLOAD_BYTES // 3  # split in halves, not into small pieces
