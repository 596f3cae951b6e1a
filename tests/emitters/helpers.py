"""Reading back what emitters delivered to a stream."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import redis

from schemas import Batch, Names, decode_batch
from schemas.codec import PAYLOAD_FIELD

# The demo pipeline's fixture tree: a package with a class, a module of nested functions, a script, a syntax error.
DEMO_TREE = Path(__file__).parent.parent / "data" / "demo_tree"
DEMO_FILES = ["broken.py", "pkg/__init__.py", "pkg/util.py", "script.py"]


def delivered_batches(client: redis.Redis, prefix: str = "pipepulse") -> list[Batch]:
    """Every batch in the events stream, in stream order (a retried XADD may appear twice)."""
    entries: list[tuple[bytes, dict[bytes, bytes]]] = client.xrange(Names(prefix).events)  # type: ignore[assignment]
    return [decode_batch(fields[PAYLOAD_FIELD]).batch for _, fields in entries]


def unique_by_producer(batches: list[Batch]) -> dict[str, dict[int, Batch]]:
    """producer_id -> seq -> batch, with duplicates (same producer and seq) folded."""
    out: dict[str, dict[int, Batch]] = defaultdict(dict)
    for batch in batches:
        previous = out[batch.producer_id].setdefault(batch.seq, batch)
        assert previous.events == batch.events, "a seq was reused for different events"
    return out
