"""The fold's state in a Faust table, written so that a reader only ever sees whole folds (pure: a mapping).

Every write to a Faust table is one changelog record, and a replacement
worker recovers the table by reading the changelog back. So the state is kept
as a snapshot and the deltas since, in chunks below Kafka's record size limit,
and a `head` record naming them is written last: a changelog cut off at any
record still holds a complete head, and everything that head names was
written before it. Two or three records a fold, however many parts changed;
a new snapshot once the deltas since the last pass 32 MiB or 1,024 folds (the
head names each delta, so their count bounds its size), and the old chunks
deleted.
"""

from __future__ import annotations

from typing import Any, Final, Mapping, MutableMapping

from schemas.checks import Limits
from schemas.codec import pack, unpack

HEAD_KEY: Final = "head"
CHUNK_BYTES: Final = 512 * 1024  # a record well under Kafka's default 1 MiB limit
FIELDS_LIMITS: Final = Limits(max_entry_bytes=1 << 30)
DELETIONS: Final = b""  # no checkpoint field is empty: in a delta, this one carries the fields deleted
Fields = dict[bytes, bytes]  # checkpoint fields, as runtime.checkpoint_changes makes them


class StateLog:
    def __init__(
        self, table: MutableMapping[str, bytes], *, chunk_bytes: int = CHUNK_BYTES, snapshot_after_bytes: int = 32 * 1024 * 1024, snapshot_after_deltas: int = 1024
    ) -> None:
        self._table, self._chunk_bytes = table, chunk_bytes
        self._snapshot_after_bytes, self._snapshot_after_deltas = snapshot_after_bytes, snapshot_after_deltas

    def head(self) -> dict[str, Any]:
        raw = self._table.get(HEAD_KEY)
        return {"offset": -1, "serial": 0, "snapshot": [], "deltas": [], "delta_bytes": 0} if raw is None else dict(unpack(raw, FIELDS_LIMITS))

    @property
    def offset(self) -> int:
        """The last input offset whose fold the table holds whole (-1: none)."""
        return int(self.head()["offset"])

    def load(self) -> Fields:
        """The checkpoint fields as of the head; chunks no head names (a fold cut off) are dropped."""
        head = self.head()
        fields: Fields = {}
        for chunks in head["snapshot"]:
            fields.update(self._read(chunks))
        for chunks in head["deltas"]:
            delta = self._read(chunks)
            for key in unpack(delta.pop(DELETIONS), FIELDS_LIMITS):
                fields.pop(key, None)
            fields.update(delta)
        named = {HEAD_KEY, *(key for chunks in head["snapshot"] + head["deltas"] for key in chunks)}
        for key in [k for k in self._table if k not in named]:
            del self._table[key]
        return fields

    def append(self, offset: int, written: Mapping[bytes, bytes], deleted: list[bytes], everything: Mapping[bytes, bytes] | None = None) -> None:
        """One fold's change; with `everything` (the whole state) a new snapshot instead, once the deltas outgrow it."""
        head = self.head()
        serial = int(head["serial"]) + 1
        obsolete: list[str] = []
        if everything is not None:
            obsolete = [key for chunks in head["snapshot"] + head["deltas"] for key in chunks]
            head["snapshot"], head["deltas"], head["delta_bytes"] = [self._write(f"s{serial}", dict(everything))], [], 0
        else:
            delta = {**written, DELETIONS: pack(deleted)}
            chunks = self._write(f"d{serial}", delta)
            head["deltas"] = [*head["deltas"], chunks]
            head["delta_bytes"] = int(head["delta_bytes"]) + sum(len(k) + len(v) for k, v in delta.items())
        head["offset"], head["serial"] = offset, serial
        self._table[HEAD_KEY] = pack(head)
        for key in obsolete:  # after the head that no longer names them
            self._table.pop(key, None)

    def wants_snapshot(self) -> bool:
        head = self.head()
        return int(head["delta_bytes"]) > self._snapshot_after_bytes or len(head["deltas"]) >= self._snapshot_after_deltas

    def _write(self, name: str, fields: Mapping[bytes, bytes]) -> list[str]:
        data = pack(dict(fields))
        keys = [f"{name}.{i}" for i in range(max(1, -(-len(data) // self._chunk_bytes)))]
        for i, key in enumerate(keys):
            self._table[key] = data[i * self._chunk_bytes : (i + 1) * self._chunk_bytes]
        return keys

    def _read(self, chunks: list[str]) -> Fields:
        return dict(unpack(b"".join(self._table[key] for key in chunks), FIELDS_LIMITS))
