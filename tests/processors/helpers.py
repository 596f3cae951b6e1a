"""Building event-log entries the way emitters and the ticker write them, for feeding processors."""

from __future__ import annotations

import itertools
import json
from typing import Any, Iterable, Sequence

from schemas.checks import Limits
from schemas.codec import PAYLOAD_FIELD, TICK_FIELD, pack, pack_envelope
from schemas.events import TAG_COMMAND, TAG_COUNT, TAG_IN_PROGRESS, TAG_LIFECYCLE, TAG_OPERATION, TAG_SYSTEM

from processors.contract import Item, LatestOutput, Output, StreamOutput
from processors.ledger import Ledger
from processors.intake import Entry, prepare

T0 = 1_800_000_000.0  # a multiple of 60: windows start on it
_ids = itertools.count(1)


def op(ts: float, operation: str = "parse", duration_ms: float = 1.0, ok: bool = True, error_type: str | None = None, hits: int = 0, misses: int = 0, counters: dict[str, float] | None = None) -> list[Any]:
    return [TAG_OPERATION, 2, ts, operation, duration_ms, ok, error_type if not ok else None, hits, misses, counters]


def count(ts: float, name: str, value: float) -> list[Any]:
    return [TAG_COUNT, 1, ts, name, value]


def system(ts: float, *, scope: str = "process", cpu: float = 50.0, rss: int = 1000, read: int = 0, write: int = 0, threads: int = 4, files: int = 3) -> list[Any]:
    return [TAG_SYSTEM, 1, ts, scope, cpu, rss, 10_000, read, write, threads, files]


def lifecycle(ts: float, kind: str, config: dict[str, Any] | None = None, depends_on: list[str] | None = None) -> list[Any]:
    return [TAG_LIFECYCLE, 2, ts, kind, config or {}, depends_on]


def in_progress(ts: float, operation: str, running: int, peak: int | None = None) -> list[Any]:
    return [TAG_IN_PROGRESS, 1, ts, operation, running, running if peak is None else peak]


def command(ts: float, action: str, target: str, *, by: str = "ops", reason: str = "", expires_in_s: float = 0.0, matchers: dict[str, str] | None = None) -> list[Any]:
    return [TAG_COMMAND, 1, ts, action, target, by, reason, expires_in_s, matchers or {}]


def batch(rows: Sequence[Sequence[Any]], *, seq: int, producer: str = "p1", component: str = "parser", pid: int = 100, host: str = "h1", dropped: int = 0) -> Entry:
    sent_at_s = max((row[2] for row in rows), default=T0)
    payload = pack_envelope(producer_id=producer, seq=seq, sent_at_s=sent_at_s, component=component, pid=pid, host=host, dropped_total=dropped, invalid_total=0, rows=rows)
    return (f"{next(_ids)}-0".encode(), {PAYLOAD_FIELD: payload})


def tick(ts: float) -> Entry:
    return (f"{next(_ids)}-0".encode(), {TICK_FIELD: pack(ts)})


def items(entries: Iterable[Entry], ledger: Ledger | None = None) -> list[Item]:
    return prepare(list(entries), ledger or Ledger(), Limits()).items


def stream_outputs(outputs: Sequence[Output], stream: str = "stats") -> list[dict[str, str]]:
    return [dict(o.fields) for o in outputs if isinstance(o, StreamOutput) and o.stream == stream]


def latest_values(outputs: Iterable[Output], table: str) -> dict[str, Any]:
    """The last value each field of a latest-value table was given (None: deleted), JSON-decoded."""
    values: dict[str, Any] = {}
    for o in outputs:
        if isinstance(o, LatestOutput) and o.table == table:
            values[o.field] = None if o.value is None else json.loads(o.value)
    return values
