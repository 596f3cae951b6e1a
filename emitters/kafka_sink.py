"""The Kafka sink: the same batches, to a Kafka topic keyed by component (for the Faust engine's partitions).

Chosen by a `kafka://host:port[,host:port]` URL where a Redis URL would go:
`Emitter("parser", redis_url="kafka://127.0.0.1:9092")`. One record per batch,
its key the component, so one component's batches share a partition and keep
their order; the producer is idempotent, so its own retries neither duplicate
nor reorder them. aiokafka (the client Faust itself uses) runs on a private
event loop in a daemon thread: `send` waits at most `socket_timeout_s` and
raises SinkError otherwise, so the flusher backs off, buffers and drops by its
bound exactly as with Redis. A retried batch keeps its `seq`, so consumers
deduplicate by `(producer_id, seq)`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from typing import Any, Coroutine, Final, Sequence

from schemas.names import kafka_servers

from emitters.errors import ConfigError, SinkError
# Under a broker's default message.max.bytes (1,048,588) and the producer's max_request_size (1 MiB), with room
# for the key, the headers and the record batch's own overhead: a bigger batch would be refused every time.
MAX_PAYLOAD_BYTES: Final = 1_000_000


def bootstrap_servers(url: str) -> str:
    """`host:port[,host:port]` from a `kafka://` URL; a clear error for anything else."""
    try:
        return kafka_servers(url)
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc


class KafkaSink:
    """One record per batch to `topic`, keyed by `key` (the component)."""

    max_payload_bytes = MAX_PAYLOAD_BYTES

    def __init__(self, *, url: str, topic: str, key: str, socket_timeout_s: float = 1.0) -> None:
        self.url = url
        self.topic = topic
        self._servers = bootstrap_servers(url)
        self._key = key.encode()
        self._timeout_s = socket_timeout_s
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name=f"pipepulse-kafka-{key}", daemon=True)
        self._thread.start()
        self._producer: Any = None  # started on the first send: constructing a sink connects to nothing

    def _run(self, coroutine: Coroutine[Any, Any, Any]) -> Any:
        future = asyncio.run_coroutine_threadsafe(coroutine, self._loop)
        try:
            return future.result(self._timeout_s)
        except concurrent.futures.TimeoutError as exc:
            future.cancel()
            raise SinkError(f"Kafka at {self._servers} did not answer within {self._timeout_s} s") from exc

    async def _start(self) -> Any:
        from aiokafka import AIOKafkaProducer  # here: only a kafka:// URL needs the client

        producer = AIOKafkaProducer(
            bootstrap_servers=self._servers,
            enable_idempotence=True,  # retries within the producer keep order and add no duplicates
            linger_ms=5,
            request_timeout_ms=max(1000, int(self._timeout_s * 1000)),
        )
        try:
            await producer.start()
        except BaseException:
            await producer.stop()
            raise
        return producer

    async def _send(self, payloads: Sequence[bytes]) -> None:
        if self._producer is None:
            self._producer = await self._start()
        sent = [await self._producer.send(self.topic, value=payload, key=self._key) for payload in payloads]
        await asyncio.gather(*sent)

    def send(self, payloads: Sequence[bytes]) -> None:
        try:
            self._run(self._send(payloads))
        except SinkError:
            raise
        except Exception as exc:  # noqa: BLE001 - aiokafka's errors, the broker's, the network's: the flusher retries them all
            raise SinkError(f"sending to Kafka topic {self.topic} at {self._servers} failed: {exc!r}") from exc

    def reopen(self) -> KafkaSink:
        """A forked child gets a loop, a thread and a producer of its own."""
        return KafkaSink(url=self.url, topic=self.topic, key=self._key.decode(), socket_timeout_s=self._timeout_s)

    def close(self) -> None:
        if self._producer is not None:
            try:
                self._run(self._producer.stop())
            except SinkError:
                pass  # the broker is gone: nothing left to flush to it
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(self._timeout_s)
        if not self._thread.is_alive():
            self._loop.close()
