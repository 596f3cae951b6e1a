"""From stream entries to processor items: decoding (pure, parallelisable) and admission through the ledger.

Decoding an entry depends on nothing but its bytes, so a replay can decode in
other processes; admission (deduplication, gaps, counters) must follow the log
order and stays in the process that folds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence, Union

from schemas.checks import Limits
from schemas.codec import PAYLOAD_FIELD, TICK_FIELD, DecodedColumns, decode_columns, unpack_tick
from schemas.errors import RejectedEntry

from processors.contract import BatchItem, Item, RecordItem, Tick
from processors.ledger import Ledger

Entry = tuple[bytes, Union[Mapping[bytes, bytes], None]]


@dataclass(frozen=True, slots=True)
class Rejection:
    """An entry that is neither a valid batch nor a valid tick."""

    reason: str
    detail: str
    raw: bytes


Decoded = Union[Tick, DecodedColumns, Rejection, None]  # None: the entry was trimmed while pending


@dataclass(slots=True)
class Prepared:
    """A read's entries turned into processor items, acknowledgements and dead letters."""

    items: list[Item] = field(default_factory=list)
    ack_ids: list[bytes] = field(default_factory=list)
    dead: list[dict[str, Any]] = field(default_factory=list)


def decode_entries(entries: Sequence[Entry], limits: Limits) -> list[tuple[bytes, Decoded]]:
    return [(entry_id, _decode(entry_id, fields, limits)) for entry_id, fields in entries]


def _decode(entry_id: bytes, fields: Mapping[bytes, bytes] | None, limits: Limits) -> Decoded:
    if not fields:
        return None
    try:
        if TICK_FIELD in fields:
            return Tick(entry_id.decode(), unpack_tick(fields[TICK_FIELD]))
        if PAYLOAD_FIELD not in fields:
            raise RejectedEntry("missing_field", f"entry has neither {PAYLOAD_FIELD!r} nor {TICK_FIELD!r}")
        return decode_columns(fields[PAYLOAD_FIELD], limits)
    except RejectedEntry as exc:
        return Rejection(exc.reason, exc.detail, next(iter(fields.values()))[:4096])


def admit(decoded: Sequence[tuple[bytes, Decoded]], ledger: Ledger) -> Prepared:
    """Deduplicate decoded entries through `ledger`, in log order; bad ones become dead letters."""
    prepared = Prepared()
    for entry_id, value in decoded:
        prepared.ack_ids.append(entry_id)
        ident = entry_id.decode()
        ledger.count("entries_total")
        if value is None:  # trimmed while pending: counted here, and as a gap when the producer's next batch arrives
            ledger.count("trimmed_entries_total")
        elif isinstance(value, Tick):
            prepared.items.append(value)
            ledger.count("ticks_total")
        elif isinstance(value, Rejection):
            prepared.dead.append({"reason": value.reason, "detail": value.detail, "entry_id": ident, "raw": value.raw})
        else:
            envelope = value.envelope
            for rejected in value.rejected:
                prepared.dead.append(
                    {"reason": rejected.reason, "detail": rejected.detail, "entry_id": ident, "producer_id": envelope.producer_id, "seq": envelope.seq, "index": rejected.index, "raw": rejected.row}
                )
            missing = ledger.admit(envelope.producer_id, envelope.seq, envelope.sent_at_s)
            if missing is not None:
                prepared.items.append(BatchItem(ident, value, missing))
                ledger.count("events_total", value.event_count)
    ledger.count("dead_letters_total", len(prepared.dead))
    return prepared


def prepare(entries: Sequence[Entry], ledger: Ledger, limits: Limits) -> Prepared:
    """Decode and admit in one step: what a worker does with each read."""
    return admit(decode_entries(entries, limits), ledger)


def prepare_records(stream: str, entries: Sequence[Entry], ledger: Ledger) -> Prepared:
    """Entries of a derived or command stream as RecordItems (the processor validates their records)."""
    prepared = Prepared()
    short = stream.rsplit(":", 1)[-1]
    for entry_id, fields in entries:
        prepared.ack_ids.append(entry_id)
        ledger.count("entries_total")
        if not fields:
            ledger.count("trimmed_entries_total")
            continue
        try:
            text = {k.decode(): v.decode() for k, v in fields.items()}
        except UnicodeDecodeError as exc:
            prepared.dead.append({"reason": "wrong_type", "detail": f"{short} entry is not UTF-8 text: {exc}", "entry_id": entry_id.decode(), "stream": stream})
            continue
        prepared.items.append(RecordItem(short, entry_id.decode(), text))
    ledger.count("dead_letters_total", len(prepared.dead))
    return prepared
