"""A seeded event log for the engine tests, and what to compare between engines.

Each second, every component sends one batch (its operations time-stamped in
that second, a burst of errors in the extractor from second 20 to 40, so that
alerts fire and resolve), then a tick closes the second. `Record`s are what an
emitter or the leader puts on the events topic: a batch keyed by component, or
a tick (key None) for every partition.
"""

from __future__ import annotations

import random
from typing import Any, Callable, Sequence

import redis

from schemas.codec import pack_envelope
from schemas.names import DERIVED_STREAMS, LATEST_TABLES, Names

from tests.processors.helpers import T0, op

COMPONENTS = ("watcher", "parser", "cache", "extractor", "detector")
Record = tuple[str | None, bytes | float]  # (component, batch payload) or (None, tick time)


def seeded_log(seed: int, seconds: int, components: Sequence[str] = COMPONENTS, ops_per_batch: int = 20) -> list[Record]:
    rng = random.Random(seed)
    seqs = dict.fromkeys(components, 0)
    records: list[Record] = []
    for second in range(seconds):
        for component in components:
            failing = component == "extractor" and 20 <= second < 40
            rows = [
                op(T0 + second + (i + rng.random()) / (ops_per_batch + 1), rng.choice(("parse", "load", "emit")), rng.lognormvariate(1.0, 0.6), ok=not (failing and rng.random() < 0.5), error_type="Timeout")
                for i in range(ops_per_batch)
            ]
            payload = pack_envelope(
                producer_id=f"{component}-{seed}", seq=seqs[component], sent_at_s=T0 + second + 1, component=component, pid=100, host="h1", dropped_total=0, invalid_total=0, rows=rows
            )
            seqs[component] += 1
            records.append((component, payload))
        records.append((None, T0 + second + 1.0))
    return records


def canonical(log: Sequence[Record], partition_of: Callable[[str], int]) -> list[Record]:
    """The one order the Faust engine folds a log in: between two ticks, partition by partition."""
    ordered: list[Record] = []
    pending: list[Record] = []
    for record in log:
        if record[0] is None:
            ordered += sorted(pending, key=lambda r: partition_of(r[0]))  # type: ignore[arg-type]  # a stable sort keeps each partition's order
            ordered.append(record)
            pending = []
        else:
            pending.append(record)
    return ordered + pending


def per_partition(log: Sequence[Record], partition_of: Callable[[str], int], partitions: int) -> list[list[Record]]:
    """What each events partition holds: its components' batches, and every tick."""
    held: list[list[Record]] = [[] for _ in range(partitions)]
    for record in log:
        for partition in range(partitions) if record[0] is None else [partition_of(record[0])]:
            held[partition].append(record)
    return held


def derived(client: redis.Redis, names: Names) -> dict[str, Any]:
    """Every derived stream (entries without their ids) and latest-value table under `names`: what engines must agree on."""
    view: dict[str, Any] = {}
    for short in DERIVED_STREAMS:
        entries: list[tuple[bytes, dict[bytes, bytes]]] = client.xrange(names.stream(short))  # type: ignore[assignment]
        view[f"stream {short}"] = [fields for _, fields in entries]
    for table in LATEST_TABLES:
        view[f"table {table}"] = client.hgetall(names.latest(table))
    return view
