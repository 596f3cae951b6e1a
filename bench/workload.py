"""The synthetic pipeline the processor benchmarks share: operations with realistic latency spreads.

Not a benchmark itself. `operation_calls` gives the arguments of `Emitter.record()`
calls (what an instrumented pipeline records); `operation_rows` and `batch_payload`
give the same events as wire rows and pre-encoded batch envelopes, for writing a
log without emitters.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

from schemas.codec import PAYLOAD_FIELD, TICK_FIELD, pack, pack_envelope
from schemas.events import TAG_OPERATION

T0 = 1_800_000_000.0  # a multiple of 60, so simulated windows start on it


@dataclass(frozen=True, slots=True)
class Operation:
    name: str
    median_ms: float
    error_rate: float
    cache_hit_rate: float | None  # None: no cache


OPERATIONS = (
    Operation("scan", 0.4, 0.0, None),
    Operation("parse", 3.0, 0.01, None),
    Operation("lookup", 0.05, 0.0, 0.85),
    Operation("extract", 6.0, 0.02, None),
    Operation("detect", 1.5, 0.005, 0.6),
)
ERROR_TYPES = ("SyntaxError", "TimeoutError")
COUNTER_SHARE = 0.02  # events that carry a domain counter

# The positional arguments of Emitter.record(): operation, duration_ms, ok, cache_hits, cache_misses, error_type, counters.
Call = tuple[str, float, bool, int, int, str | None, dict[str, float] | None]


def operation_calls(n: int, seed: int, operations: Sequence[Operation] = OPERATIONS) -> list[Call]:
    """`n` record() calls cycling over `operations`, lognormal durations, a few errors, cache hits and counters."""
    rng = random.Random(seed)
    calls: list[Call] = []
    for i in range(n):
        op = operations[i % len(operations)]
        ok = rng.random() >= op.error_rate
        hit = op.cache_hit_rate is not None and rng.random() < op.cache_hit_rate
        calls.append(
            (
                op.name,
                round(rng.lognormvariate(0.0, 0.6) * op.median_ms * (0.2 if hit else 1.0), 4),
                ok,
                int(hit),
                int(op.cache_hit_rate is not None and not hit),
                None if ok else rng.choice(ERROR_TYPES),
                {"items": float(rng.randint(1, 20))} if rng.random() < COUNTER_SHARE else None,
            )
        )
    return calls


def operation_rows(calls: Sequence[Call], timestamps: Sequence[float]) -> list[list[Any]]:
    """The wire rows (OperationEvent v2) an emitter sends for these calls at these times."""
    return [[TAG_OPERATION, 2, ts, op, ms, ok, err, hits, misses, counters] for ts, (op, ms, ok, hits, misses, err, counters) in zip(timestamps, calls)]


def batch_payload(rows: Sequence[Sequence[Any]], *, producer_id: str, seq: int, component: str, pid: int = 4242, host: str = "bench-host") -> bytes:
    """One stream entry's payload, as an emitter's flusher encodes it."""
    sent_at_s = float(max(row[2] for row in rows))
    payload: bytes = pack_envelope(
        producer_id=producer_id, seq=seq, sent_at_s=sent_at_s, component=component, pid=pid, host=host, dropped_total=0, invalid_total=0, rows=rows
    )
    return payload


def paced(seconds: float, rate: float, chunk: int) -> Iterator[int]:
    """Yield the count of events recorded so far each time the next `chunk` is due at `rate` per second."""
    start = time.perf_counter()
    recorded = 0
    while (now := time.perf_counter()) - start < seconds:
        if recorded > (now - start) * rate:
            time.sleep(recorded / rate - (now - start))  # pacing the load, not synchronisation
            continue
        yield recorded
        recorded += chunk


def one_second(second: int, calls: list[list[Call]], operations_per_component: int, events_per_series: int, batches_per_s: int = 1) -> list[tuple[bytes, dict[bytes, bytes]]]:
    """Log entries for simulated second `second`: every component's batches, interleaved as flushes arrive, then the tick that ends it."""
    per_second = operations_per_component * events_per_series
    per_batch = max(1, per_second // batches_per_s)
    starts = range(0, per_second, per_batch)
    timestamps = [T0 + second + (i + 0.5) / per_second for i in range(per_second)]
    rows = []
    for component_calls in calls:
        offset = (second * per_second) % (len(component_calls) - per_second)
        rows.append(operation_rows(component_calls[offset : offset + per_second], timestamps))
    entries: list[tuple[bytes, dict[bytes, bytes]]] = []
    for b, start in enumerate(starts):
        for c, component_rows in enumerate(rows):
            payload = batch_payload(component_rows[start : start + per_batch], producer_id=f"bench:{c}", seq=second * len(starts) + b, component=f"component-{c:02d}")
            entries.append((f"{second * 100_000 + len(entries) + 1}-0".encode(), {PAYLOAD_FIELD: payload}))
    entries.append((f"{second * 100_000 + 99_999}-0".encode(), {TICK_FIELD: pack(T0 + second + 1)}))
    return entries
