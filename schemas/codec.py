"""The one place that turns batches into bytes and back.

msgpack options are pinned here (`use_bin_type=True`, `raw=False`,
`strict_map_key=True`), entries are size-capped before unpacking, every event
is validated with a specific reason, and rows of older versions are upcast to
the current one. An invalid envelope rejects the whole entry; an invalid event
rejects only that event, so one bad value never costs its batch.
"""

from __future__ import annotations

import dataclasses
import operator
from dataclasses import dataclass
from typing import Any, Callable, Final, Mapping, Sequence

import msgpack

from schemas import checks
from schemas.checks import Check, Limits
from schemas.errors import RejectedEntry
from schemas.events import (
    COMMAND_ACTIONS,
    LIFECYCLE_KINDS,
    TAG_COMMAND,
    TAG_COUNT,
    TAG_IN_PROGRESS,
    TAG_LIFECYCLE,
    TAG_OPERATION,
    TAG_SYSTEM,
    AlertCommand,
    Batch,
    CountEvent,
    Event,
    InProgressSample,
    LifecycleEvent,
    OperationEvent,
    SystemSample,
)

ENVELOPE_VERSION: Final = Batch.VERSION
# The field under which a batch travels in its stream entry.
PAYLOAD_FIELD: Final = b"b"
# The field of a tick entry: the runtime's time mark, which moves event time on when no events arrive.
TICK_FIELD: Final = b"t"

Row = Sequence[Any]

_SYSTEM_V1: Final[tuple[tuple[str, Check], ...]] = (
    ("timestamp_s", checks.timestamp),
    ("scope", checks.one_of("process", "host")),
    ("cpu_percent", checks.non_negative),
    ("rss_bytes", checks.count),
    ("memory_total_bytes", checks.count),
    ("read_bytes", checks.count),
    ("write_bytes", checks.count),
    ("threads", checks.count),
    ("open_files", checks.count),
)

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
    (TAG_SYSTEM, 1): _SYSTEM_V1,
    (TAG_SYSTEM, 2): (
        *_SYSTEM_V1,
        ("net_sent_bytes", checks.optional_count),
        ("net_recv_bytes", checks.optional_count),
        ("net_sent_packets", checks.optional_count),
        ("net_recv_packets", checks.optional_count),
    ),
    (TAG_LIFECYCLE, 1): (
        ("timestamp_s", checks.timestamp),
        ("kind", checks.one_of("started", "stopped", "heartbeat", "configured")),
        ("config", checks.config),
    ),
    (TAG_LIFECYCLE, 2): (
        ("timestamp_s", checks.timestamp),
        ("kind", checks.one_of(*LIFECYCLE_KINDS)),
        ("config", checks.config),
        ("depends_on", checks.optional_names),
    ),
    (TAG_COMMAND, 1): (
        ("timestamp_s", checks.timestamp),
        ("action", checks.one_of(*COMMAND_ACTIONS)),
        ("target", checks.name),
        ("by", checks.text),
        ("reason", checks.text),
        ("expires_in_s", checks.non_negative),
        ("matchers", checks.config),
    ),
    (TAG_IN_PROGRESS, 1): (
        ("timestamp_s", checks.timestamp),
        ("operation", checks.name),
        ("in_progress", checks.count),
        ("peak", checks.count),
    ),
}


def upcast_operation_v1_v2(fields: list[Any]) -> list[Any]:
    """v1 had no error type and no domain counters; a v1 failure's type is unknown."""
    timestamp_s, operation, duration_ms, ok, cache_hits, cache_misses = fields
    return [timestamp_s, operation, duration_ms, ok, None if ok else "unknown", cache_hits, cache_misses, {}]


def upcast_system_v1_v2(fields: list[Any]) -> list[Any]:
    """v1 had no network counters: not measured."""
    return [*fields, None, None, None, None]


def upcast_lifecycle_v1_v2(fields: list[Any]) -> list[Any]:
    """v1 declared no dependencies."""
    return [*fields, None]


UPCASTS: Final[dict[tuple[int, int], Callable[[list[Any]], list[Any]]]] = {
    (TAG_OPERATION, 1): upcast_operation_v1_v2,
    (TAG_SYSTEM, 1): upcast_system_v1_v2,
    (TAG_LIFECYCLE, 1): upcast_lifecycle_v1_v2,
}

_TYPES: Final[dict[int, type[Event]]] = {
    TAG_OPERATION: OperationEvent,
    TAG_COUNT: CountEvent,
    TAG_SYSTEM: SystemSample,
    TAG_LIFECYCLE: LifecycleEvent,
    TAG_COMMAND: AlertCommand,
    TAG_IN_PROGRESS: InProgressSample,
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


@dataclass(frozen=True, slots=True, kw_only=True)
class Columns:
    """The valid events of one type in a batch, field by field, upcast to the current version.

    `index` holds each event's position in the batch, so events of several types can be put back in order.
    """

    tag: int
    index: tuple[int, ...]
    fields: Mapping[str, Sequence[Any]]

    def __len__(self) -> int:
        return len(self.index)


@dataclass(frozen=True, slots=True, kw_only=True)
class DecodedColumns:
    """A batch decoded column-wise: what a stream processor folds without building an object per event."""

    envelope: Batch  # with no events: they are in `columns`
    columns: Mapping[int, Columns]
    rejected: tuple[RejectedEvent, ...]

    @property
    def event_count(self) -> int:
        return sum(len(c) for c in self.columns.values())


def _uniform_group(rows: list[Any]) -> dict[tuple[int, int], list[int]] | None:
    """The common case at C speed: every row a well-formed row of one (tag, version); else None."""
    if not rows or set(map(type, rows)) != {list} or min(map(len, rows)) < 2:
        return None
    if set(map(type, map(_TAG, rows))) != {int} or set(map(type, map(_VERSION, rows))) != {int}:
        return None
    heads = set(map(_HEAD, rows))
    if len(heads) != 1 or next(iter(heads)) not in LAYOUTS:
        return None
    tag, version = next(iter(heads))
    if set(map(len, rows)) != {len(LAYOUTS[(tag, version)]) + 2}:
        return None
    return {(tag, version): list(range(len(rows)))}


_TAG: Final = operator.itemgetter(0)
_VERSION: Final = operator.itemgetter(1)
_HEAD: Final = operator.itemgetter(0, 1)


def decode_columns(data: bytes, limits: Limits = Limits()) -> DecodedColumns:
    """Validate and decode one stream entry into columns; raises RejectedEntry for a bad envelope."""
    envelope = _envelope(unpack(data, limits), limits)
    rows: list[Any] = envelope["events"]
    problems: dict[int, tuple[str, str]] = {}
    groups = _uniform_group(rows)
    if groups is None:
        groups = {}
        for index, row in enumerate(rows):
            key, reason, detail = _row_key(row)
            if key is None:
                problems[index] = (reason, detail)
            else:
                groups.setdefault(key, []).append(index)
    valid: dict[int, list[tuple[int, Sequence[Any]]]] = {}
    fast: dict[int, Columns] = {}
    for key, indices in groups.items():
        whole = len(indices) == len(rows)
        columns = list(zip(*rows))[2:] if whole else list(zip(*(rows[i][2:] for i in indices)))
        clean = True
        for (field, check), column in zip(LAYOUTS[key], columns):
            for position, reason, detail in check(column, limits):
                problems.setdefault(indices[position], (reason, f"{field}: {detail}"))
                clean = False
        tag = key[0]
        if clean and key[1] == _TYPES[tag].VERSION and not any(k[0] == tag for k in groups if k != key):
            # The common case: one current version, every row valid; the zipped columns are the answer.
            fast[tag] = Columns(tag=tag, index=tuple(indices), fields=dict(zip(_field_names(tag), columns)))
            continue
        valid.setdefault(tag, []).extend((i, _upcast(key, rows[i][2:])) for i in indices if i not in problems)
    for tag, items in valid.items():
        items.sort(key=lambda item: item[0])
        if items:
            fields = dict(zip(_field_names(tag), zip(*(f for _, f in items))))
            fast[tag] = Columns(tag=tag, index=tuple(i for i, _ in items), fields=fields)
    rejected = tuple(
        RejectedEvent(index=i, reason=reason, detail=detail, row=pack(rows[i])) for i, (reason, detail) in sorted(problems.items())
    )
    batch = Batch(**{field: envelope[field] for field, _ in _ENVELOPE}, events=())
    return DecodedColumns(envelope=batch, columns=fast, rejected=rejected)


def unpack_tick(data: bytes) -> float:
    """The time of a tick entry; raises RejectedEntry unless it is a timestamp in range."""
    value = unpack(data)
    problems = checks.timestamp([value], Limits())
    if problems:
        _, reason, detail = problems[0]
        raise RejectedEntry(reason, f"tick: {detail}")
    return float(value)


def decode_batch(data: bytes, limits: Limits = Limits()) -> Decoded:
    """Validate and decode one stream entry into event objects; raises RejectedEntry for a bad envelope."""
    decoded = decode_columns(data, limits)
    envelope = decoded.envelope
    shared = {"component": envelope.component, "pid": envelope.pid, "host": envelope.host}
    positioned: list[tuple[int, Event]] = []
    for tag, columns in decoded.columns.items():
        names = tuple(columns.fields)
        for index, values in zip(columns.index, zip(*columns.fields.values())):
            positioned.append((index, _event(tag, dict(zip(names, values)), shared)))
    positioned.sort(key=lambda item: item[0])
    batch = dataclasses.replace(envelope, events=tuple(event for _, event in positioned))
    return Decoded(batch=batch, rejected=decoded.rejected)


def _field_names(tag: int) -> tuple[str, ...]:
    return tuple(field for field, _ in LAYOUTS[(tag, _TYPES[tag].VERSION)])


def _upcast(key: tuple[int, int], fields: list[Any]) -> list[Any]:
    tag, version = key
    while (tag, version) in UPCASTS:
        fields = UPCASTS[(tag, version)](fields)
        version += 1
    return fields


def _event(tag: int, values: dict[str, Any], shared: Mapping[str, Any]) -> Event:
    cls = _TYPES[tag]
    if tag == TAG_OPERATION and values["counters"] is None:  # emitters send nil for "no counters": it packs smaller
        values["counters"] = {}
    elif tag == TAG_LIFECYCLE and values["depends_on"] is not None:
        values["depends_on"] = tuple(values["depends_on"])
    return cls(**values, **shared)
