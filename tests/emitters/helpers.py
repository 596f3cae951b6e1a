"""Reading back what emitters delivered to a stream."""

from __future__ import annotations

from collections import defaultdict

import redis

from schemas import Batch, Names, decode_batch
from schemas.codec import PAYLOAD_FIELD


def delivered_batches(client: redis.Redis, prefix: str = "pipepulse") -> list[Batch]:
    """Every batch in the events stream, in stream order (a retried XADD may appear twice)."""
    return [decode_batch(fields[PAYLOAD_FIELD]).batch for _, fields in client.xrange(Names(prefix).events)]


def unique_by_producer(batches: list[Batch]) -> dict[str, dict[int, Batch]]:
    """producer_id -> seq -> batch, with duplicates (same producer and seq) folded."""
    out: dict[str, dict[int, Batch]] = defaultdict(dict)
    for batch in batches:
        previous = out[batch.producer_id].setdefault(batch.seq, batch)
        assert previous.events == batch.events, "a seq was reused for different events"
    return out
