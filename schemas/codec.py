"""The one place that turns batches into bytes and back.

msgpack options are pinned here (`use_bin_type=True`, `raw=False`,
`strict_map_key=True`), entries are size-capped before unpacking, every event
is validated with a specific reason, and rows of older versions are upcast to
the current one. An invalid envelope rejects the whole entry; an invalid event
rejects only that event, so one bad value never costs its batch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Final, Mapping, Sequence

import msgpack

from schemas import checks
from schemas.checks import Check, Limits
from schemas.errors import RejectedEntry
from schemas.events import (
    TAG_COUNT,
    TAG_LIFECYCLE,
    TAG_OPERATION,
    TAG_SYSTEM,
    Batch,
    CountEvent,
    Event,
    LifecycleEvent,
    OperationEvent,
    SystemSample,
)

ENVELOPE_VERSION: Final = Batch.VERSION
# The field under which a batch travels in its stream entry.
PAYLOAD_FIELD: Final = b"b"

Row = Sequence[Any]

# Field order of each row after its [tag, version] prefix, per (tag, version).
LAYOUTS: Final[dict[tuple[int, int], tuple[tuple[str, Check], ...]]] = {
    (TAG_OPERATION, 1): (
        ("timestamp_s", checks.timestamp),
        ("operation", checks.name),
        ("duration_ms", checks.duration),
        ("ok", checks.boolean),
        ("cache_hits", checks.count),
        ("cache_misses", checks.count),
    ),
    (TAG_OPERATION, 2): (
        ("timestamp_s", checks.timestamp),
        ("operation", checks.name),
        ("duration_ms", checks.duration),
        ("ok", checks.boolean),
        ("error_type", checks.optional_text),
        ("cache_hits", checks.count),
        ("cache_misses", checks.count),
        ("counters", checks.counters),
    ),
    (TAG_COUNT, 1): (
        ("timestamp_s", checks.timestamp),
        ("name", checks.name),
        ("value", checks.finite),
    ),
    (TAG_SYSTEM, 1): (
        ("timestamp_s", checks.timestamp),
        ("scope", checks.one_of("process", "host")),
        ("cpu_percent", checks.non_negative),
        ("rss_bytes", checks.count),
        ("memory_total_bytes", checks.count),
        ("read_bytes", checks.count),
        ("write_bytes", checks.count),
        ("threads", checks.count),
        ("open_files", checks.count),
    ),
    (TAG_LIFECYCLE, 1): (
        ("timestamp_s", checks.timestamp),
        ("kind", checks.one_of("started", "stopped", "heartbeat")),
        ("config", checks.config),
    ),
}


def upcast_operation_v1_v2(fields: list[Any]) -> list[Any]:
    """v1 had no error type and no domain counters; a v1 failure's type is unknown."""
    timestamp_s, operation, duration_ms, ok, cache_hits, cache_misses = fields
    return [timestamp_s, operation, duration_ms, ok, None if ok else "unknown", cache_hits, cache_misses, {}]


UPCASTS: Final[dict[tuple[int, int], Callable[[list[Any]], list[Any]]]] = {
    (TAG_OPERATION, 1): upcast_operation_v1_v2,
}

_TYPES: Final[dict[int, type[Event]]] = {
    TAG_OPERATION: OperationEvent,
    TAG_COUNT: CountEvent,
    TAG_SYSTEM: SystemSample,
    TAG_LIFECYCLE: LifecycleEvent,
}

_ENVELOPE: Final[tuple[tuple[str, Check], ...]] = (
    ("producer_id", checks.name),
    ("seq", checks.count),
    ("sent_at_s", checks.timestamp),
    ("component", checks.name),
    ("pid", checks.count),
    ("host", checks.name),
    ("dropped_total", checks.count),
    ("invalid_total", checks.count),
)


@dataclass(frozen=True, slots=True, kw_only=True)
class RejectedEvent:
    """One event of an otherwise valid batch that broke the contract."""

    index: int
    reason: str
    detail: str
    row: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class Decoded:
    batch: Batch
    rejected: tuple[RejectedEvent, ...]


def pack(value: object) -> bytes:
    """msgpack with the pinned options; raises TypeError on a value msgpack cannot carry."""
    packed: bytes = msgpack.packb(value, use_bin_type=True)
    return packed


def unpack(data: bytes, limits: Limits = Limits()) -> Any:
    """Size-capped, strict msgpack decoding; anything else is a RejectedEntry."""
    if len(data) > limits.max_entry_bytes:
        raise RejectedEntry("oversized_entry", f"{len(data)} bytes exceeds {limits.max_entry_bytes}")
    try:
        return msgpack.unpackb(data, raw=False, strict_map_key=True, use_list=True)
    except (ValueError, TypeError, msgpack.UnpackException) as exc:  # UnicodeDecodeError is a ValueError
        raise RejectedEntry("malformed_msgpack", str(exc)[:200]) from exc


def pack_envelope(
    *,
    producer_id: str,
    seq: int,
    sent_at_s: float,
    component: str,
    pid: int,
    host: str,
    dropped_total: int,
    invalid_total: int,
    rows: Sequence[Row],
) -> bytes:
    """The wire form of a batch; `rows` are `[tag, version, *fields]` as in LAYOUTS."""
    return pack(
        {
            "v": ENVELOPE_VERSION,
            "producer_id": producer_id,
            "seq": seq,
            "sent_at_s": sent_at_s,
            "component": component,
            "pid": pid,
            "host": host,
            "dropped_total": dropped_total,
            "invalid_total": invalid_total,
            "events": rows,
        }
    )


def event_row(event: Event) -> list[Any]:
    """The current-version row of an event (the inverse of decoding)."""
    layout = LAYOUTS[(event.TAG, event.VERSION)]
    return [event.TAG, event.VERSION, *(getattr(event, field) for field, _ in layout)]


def encode_batch(batch: Batch) -> bytes:
    return pack_envelope(
        producer_id=batch.producer_id,
        seq=batch.seq,
        sent_at_s=batch.sent_at_s,
        component=batch.component,
        pid=batch.pid,
        host=batch.host,
        dropped_total=batch.dropped_total,
        invalid_total=batch.invalid_total,
        rows=[event_row(event) for event in batch.events],
    )


def _envelope(value: object, limits: Limits) -> dict[str, Any]:
    if type(value) is not dict:
        raise RejectedEntry("wrong_type", f"entry is a {type(value).__name__}, not a map")
    version = value.get("v")
    if version != ENVELOPE_VERSION or type(version) is not int:
        raise RejectedEntry("unknown_version", f"envelope version {version!r}"[:200])
    for field, check in (*_ENVELOPE, ("events", _rows_check)):
        if field not in value:
            raise RejectedEntry("missing_field", f"envelope has no {field!r}")
        problems = check([value[field]], limits)
        if problems:
            _, reason, detail = problems[0]
            raise RejectedEntry(reason, f"envelope {field}: {detail}")
    if len(value["events"]) > limits.max_events:
        raise RejectedEntry("too_many_items", f"{len(value['events'])} events exceeds {limits.max_events}")
    return value


def _rows_check(col: Sequence[object], limits: Limits) -> list[checks.Problem]:
    return [(0, "wrong_type", "events is not an array")] if type(col[0]) is not list else []


def _row_key(row: object) -> tuple[tuple[int, int] | None, str, str]:
    """The (tag, version) of a row, or why it has none."""
    if type(row) is not list or len(row) < 2:
        return None, "wrong_type", "event is not an array of [tag, version, fields...]"
    tag, version = row[0], row[1]
    if type(tag) is not int or tag not in _TYPES:
        return None, "unknown_type", f"event type tag {tag!r}"[:200]
    if type(version) is not int or (tag, version) not in LAYOUTS:
        return None, "unknown_version", f"version {version!r} of event type {_TYPES[tag].__name__}"[:200]
    if len(row) - 2 != len(LAYOUTS[(tag, version)]):
        return None, "missing_field", f"{_TYPES[tag].__name__} v{version} has {len(row) - 2} fields, needs {len(LAYOUTS[(tag, version)])}"
    return (tag, version), "", ""


def decode_batch(data: bytes, limits: Limits = Limits()) -> Decoded:
    """Validate and decode one stream entry; raises RejectedEntry for a bad envelope."""
    envelope = _envelope(unpack(data, limits), limits)
    rows: list[Any] = envelope["events"]
    problems: dict[int, tuple[str, str]] = {}
    groups: dict[tuple[int, int], list[int]] = {}
    for index, row in enumerate(rows):
        key, reason, detail = _row_key(row)
        if key is None:
            problems[index] = (reason, detail)
        else:
            groups.setdefault(key, []).append(index)
    fields_by_index: dict[int, list[Any]] = {}
    for key, indices in groups.items():
        columns = list(zip(*(rows[i][2:] for i in indices)))
        for (field, check), column in zip(LAYOUTS[key], columns):
            for position, reason, detail in check(column, limits):
                problems.setdefault(indices[position], (reason, f"{field}: {detail}"))
        for index in indices:
            if index not in problems:
                fields_by_index[index] = _upcast(key, rows[index][2:])
    shared = {"component": envelope["component"], "pid": envelope["pid"], "host": envelope["host"]}
    events = tuple(_event(rows[i][0], fields_by_index[i], shared) for i in sorted(fields_by_index))
    rejected = tuple(
        RejectedEvent(index=i, reason=reason, detail=detail, row=pack(rows[i])) for i, (reason, detail) in sorted(problems.items())
    )
    batch = Batch(**{field: envelope[field] for field, _ in _ENVELOPE}, events=events)
    return Decoded(batch=batch, rejected=rejected)


def _upcast(key: tuple[int, int], fields: list[Any]) -> list[Any]:
    tag, version = key
    while (tag, version) in UPCASTS:
        fields = UPCASTS[(tag, version)](fields)
        version += 1
    return fields


def _event(tag: int, fields: list[Any], shared: Mapping[str, Any]) -> Event:
    cls = _TYPES[tag]
    values = dict(zip((field for field, _ in LAYOUTS[(tag, cls.VERSION)]), fields))
    if tag == TAG_OPERATION and values["counters"] is None:  # emitters send nil for "no counters": it packs smaller
        values["counters"] = {}
    return cls(**values, **shared)
