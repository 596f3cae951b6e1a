"""One-off records to the Faust engine's events topic, for commands (alert acks and silences) sent from the CLI;
and the broker list of a `kafka://` URL.

aiokafka, not faust: a CLI that acknowledges an alert needs no Faust app.
"""

from __future__ import annotations

import asyncio

from schemas.names import kafka_servers

from processors.errors import ConfigError, ProcessorError


def bootstrap(kafka_url: str) -> str:
    """`host:port[,host:port]` from `kafka://host:port[,host:port]`, as aiokafka takes it."""
    try:
        return kafka_servers(kafka_url)
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc


class SendError(ProcessorError):
    """The broker did not take the record."""


def send_record(kafka_url: str, topic: str, key: str, value: bytes, timeout_s: float = 10.0) -> None:
    """One record, keyed like an emitter's batches, acknowledged by the broker before this returns."""
    servers = bootstrap(kafka_url)
    try:
        asyncio.run(asyncio.wait_for(_send(servers, topic, key, value), timeout_s))
    except Exception as exc:  # noqa: BLE001 - the client's, the broker's, the network's: one clear error
        raise SendError(f"sending to Kafka topic {topic} at {servers}: {exc!r}") from exc


async def _send(servers: str, topic: str, key: str, value: bytes) -> None:
    from aiokafka import AIOKafkaProducer  # here: only the Faust engine needs the client

    producer = AIOKafkaProducer(bootstrap_servers=servers, enable_idempotence=True)
    await producer.start()
    try:
        await producer.send_and_wait(topic, value, key=key.encode())
    finally:
        await producer.stop()
