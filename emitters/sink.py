"""Where batches go: the Sink seam, and the Redis Streams sink (the Kafka one is emitters.kafka_sink)."""

from __future__ import annotations

from typing import Protocol, Sequence

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from schemas.codec import PAYLOAD_FIELD

from emitters.errors import SinkError



class Sink(Protocol):
    """Delivers encoded batches; raises SinkError when it cannot (the flusher retries).

    A sink whose transport caps a payload below the processors' 1 MiB states it as `max_payload_bytes`
    (as KafkaSink does): the emitter then splits batches to fit, where a bigger one would be retried forever.
    """

    def send(self, payloads: Sequence[bytes]) -> None: ...

    def reopen(self) -> Sink:
        """A sink for a forked child: connections must not be shared across fork()."""
        ...

    def close(self) -> None: ...


class RedisSink:
    """One XADD per batch, pipelined, trimmed with `MAXLEN ~`.

    redis-py's own retries are off: a retried XADD after a lost reply makes a
    second entry, so the flusher owns retrying and consumers deduplicate by seq.
    """

    def __init__(
        self,
        *,
        stream: str,
        maxlen: int,
        redis_url: str | None = None,
        client: redis.Redis | None = None,
        socket_timeout_s: float = 1.0,
    ) -> None:
        if (redis_url is None) == (client is None):
            raise ValueError("give exactly one of redis_url and client")
        self.stream = stream
        self.maxlen = maxlen
        self._url = redis_url
        self._socket_timeout_s = socket_timeout_s
        self._client = client if client is not None else self._connect(redis_url or "")

    def _connect(self, redis_url: str) -> redis.Redis:
        return redis.Redis.from_url(
            redis_url,
            socket_timeout=self._socket_timeout_s,
            socket_connect_timeout=self._socket_timeout_s,
            retry=Retry(NoBackoff(), 0),
        )

    def send(self, payloads: Sequence[bytes]) -> None:
        pipe = self._client.pipeline(transaction=False)
        for payload in payloads:
            pipe.xadd(self.stream, {PAYLOAD_FIELD: payload}, maxlen=self.maxlen, approximate=True)
        try:
            pipe.execute()
        except (redis.RedisError, OSError) as exc:
            raise SinkError(f"XADD to {self.stream} failed: {exc}") from exc

    def reopen(self) -> RedisSink:
        if self._url is None:  # an injected client is the caller's to manage
            return self
        return RedisSink(stream=self.stream, maxlen=self.maxlen, redis_url=self._url, socket_timeout_s=self._socket_timeout_s)

    def close(self) -> None:
        if self._url is not None:
            self._client.close()
