"""Stage 2 of the Faust engine, without Faust: the ordered log folded through the monitor, state in a table.

`OrderedFold.fold(records)` takes `(offset, value)` records of the ordered
topic, puts them in their one order and turns them into the entries the Redis
runtime reads (`ordering`),
deduplicates batches by (producer_id, seq) through the ledger, applies them to
the same `MonitorProcessor`, appends the changed state parts to `state` (a
Faust table, through `StateLog`: its changelog is what a replacement worker
recovers from), and writes the outputs to Redis through `commit_once`, whose
applied offset makes the write idempotent. The state also records the last
ordered offset it holds: it takes records only in offset order from there, so
a record delivered again after a failover is skipped and one delivered past a
gap is refused (`wanted` names the first missing, for the caller to read from
the topic), and a worker whose memory is not the table's (it lost the
partition meanwhile) rebuilds from it.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from typing import Any, Callable, Mapping, MutableMapping, Sequence

import redis

from schemas.checks import Limits
from schemas.errors import RejectedEntry
from schemas.names import Names

from processors.contract import Processor
from processors.errors import ProcessorError
from processors.intake import Entry, prepare
from processors.ledger import Ledger
from processors.runtime import LEDGER_PART, PROCESSOR_PART, EngineCommit, RuntimeMetrics, Stateful, applied_state, checkpoint_changes, commit_once, parse_checkpoint, publish_report
from processors.scaleout.ordering import Reorder
from processors.scaleout.statelog import StateLog

log = logging.getLogger("pipepulse.faust")

ENGINE = "faust"
REORDER_PART = "m"
Record = tuple[int, bytes]
METRICS_INTERVAL_S = 1.0  # how often its figures go to `{prefix}:runtime`, as the Redis runtime does


class OrderedFold:
    def __init__(
        self, *, processor_factory: Callable[[], Processor], state: MutableMapping[str, bytes] | StateLog, client: redis.Redis, names: Names, limits: Limits = Limits()
    ) -> None:
        self._factory, self._client, self._names, self._limits = processor_factory, client, names, limits
        self._log = state if isinstance(state, StateLog) else StateLog(state)
        self.metrics = RuntimeMetrics()
        self._offset: int | None = None  # None: memory is not built from the table yet (or no longer matches it)
        self._redis_offset = -1
        self.wanted: int | None = None  # the first offset missing when records came past a gap: the caller reads it from the topic
        self.highwater: int | None = None  # the ordered partition's end offset as the consumer last saw it (None: unknown), for the lag

    def _build(self) -> None:
        """Memory from the table (the last whole fold written), and where Redis stands."""
        self._offset = None  # until this completes
        parts = parse_checkpoint(self._log.load())
        self.processor = self._factory()
        self.processor.restore(parts.get(PROCESSOR_PART, {}))
        self.ledger = Ledger.restore(parts.get(LEDGER_PART, {}))
        self.reorder = Reorder.restore(parts.get(REORDER_PART, {}))
        self._offset = self._log.offset
        self._redis_offset = applied_state(self._client, self._names, ENGINE)[0]
        if self._offset == -1 and self._redis_offset >= 0:
            log.warning(
                "the state table is empty but Redis holds outputs up to ordered offset %d: the log up to there is folded without writing "
                "(if the Kafka topics were recreated under a prefix Redis already holds, delete %s)", self._redis_offset, self._names.applied(ENGINE)
            )

    @property
    def offset(self) -> int:
        """The last ordered offset folded into the state."""
        assert self._offset is not None
        return self._offset

    def fold(self, records: Sequence[Record]) -> None:
        try:
            self._fold_records(records)
        except BaseException:
            self._offset = None  # memory may be past the table now: rebuild from it before the records come again
            raise

    def _fold_records(self, records: Sequence[Record]) -> None:
        if self._log.offset != self._offset:
            if self._offset is not None:
                log.info("the table moved on elsewhere (a rebalance): rebuilding from it")
            self._build()
        fresh = [r for r in records if r[0] > self.offset]  # delivered again after a failover: already in the state
        # The ordered topic's offsets have no gaps: records past one (a consumer that skipped ahead over a
        # rebalance) must wait until the ones before them are folded, or they would be lost.
        contiguous = [r for i, r in enumerate(fresh) if r[0] == self.offset + 1 + i]
        self.wanted = self.offset + 1 + len(contiguous) if len(contiguous) < len(fresh) else None
        if self.wanted is not None:
            log.warning("ordered records from %d came past a gap at %d: refused until the gap is read", fresh[len(contiguous)][0], self.wanted)
        fresh = contiguous
        if not fresh:
            return
        # Outputs up to what Redis already holds are recomputed, to move the state, but not written again.
        written = [r for r in fresh if r[0] <= self._redis_offset]
        if written:
            self._fold(written, write=False)
        if len(written) < len(fresh):
            self._fold(fresh[len(written):], write=True)

    def _fold(self, records: Sequence[Record], *, write: bool) -> None:
        started = time.perf_counter()
        poisoned: dict[bytes, Exception] = {}
        while True:
            entries, dead = self._release(records)
            prepared = prepare([e for e in entries if e[0] not in poisoned], self.ledger, self._limits)
            try:
                outputs = self.processor.apply(prepared.items)
                break
            except Exception:  # a poison entry: find it from the last state, and fold again without it
                log.exception("the monitor failed on %d entries; isolating the bad one", len(entries))
                entry_id, exc = self._culprit(records, poisoned)
                poisoned[entry_id] = exc
                self._build()
        for entry_id, exc in poisoned.items():
            dead.append({"reason": "processor_error", "detail": f"{type(exc).__name__}: {exc}"[:500], "entry_id": entry_id.decode()})
            self.ledger.count("dead_letters_total")
        if write:
            self._commit(EngineCommit(offset=records[-1][0], previous=self._redis_offset, outputs=outputs, dead=[*dead, *prepared.dead], counters=dict(self.ledger.counters), processor=self.processor.name))
            self.metrics.committed(time.perf_counter() - started, [("ordered", prepared)])
        self._store(records[-1][0])
        self._publish_metrics()

    def _release(self, records: Sequence[Record]) -> tuple[list[Entry], list[dict[str, Any]]]:
        """The entries the records release, in the one order; records that are not stage 1's become dead letters."""
        entries: list[Entry] = []
        dead: list[dict[str, Any]] = []
        for offset, value in records:
            try:
                entries += self.reorder.push(offset, value, self._limits)
            except RejectedEntry as exc:
                dead.append({"reason": exc.reason, "detail": exc.detail, "entry_id": f"ordered-{offset}", "raw": value[:4096]})
                self.ledger.count("dead_letters_total")
        return entries, dead

    def _culprit(self, records: Sequence[Record], poisoned: Mapping[bytes, Exception]) -> tuple[bytes, Exception]:
        """The first entry the monitor raises on, applying one at a time from the table's state."""
        self._build()
        entries, _ = self._release(records)
        for entry in entries:
            if entry[0] in poisoned:
                continue
            try:
                self.processor.apply(prepare([entry], self.ledger, self._limits).items)
            except Exception as exc:
                return entry[0], exc
        raise ProcessorError("the monitor failed on a batch but on none of its entries alone")

    def _commit(self, commit: EngineCommit) -> None:
        """Redis first, the table after: a crash between them replays into the offset guard, never past it.
        A failure here leaves memory ahead of the table; `fold` marks it for a rebuild."""
        if not commit_once(self._client, self._names, ENGINE, commit):
            log.warning("Redis already holds outputs past ordered offset %d (another worker wrote them)", commit.offset)
        self._redis_offset = commit.offset

    def _publish_metrics(self) -> None:
        """The worker's own figures; a failure to write them loses a report, never a fold."""
        if not self.metrics.due(METRICS_INTERVAL_S):
            return
        lag = None if self.highwater is None else max(0, self.highwater - 1 - self.offset)  # ordered records not yet folded
        report = self.metrics.report(time.monotonic(), self.ledger.counters, lag=lag, pending=None)
        try:
            publish_report(self._client, self._names, self.processor.name, {**report, "engine": ENGINE, "host": socket.gethostname(), "pid": os.getpid()})  # which worker folds now
        except redis.RedisError as exc:
            log.warning("could not publish the runtime figures: %s", exc)

    def _store(self, offset: int) -> None:
        sources: dict[str, Stateful] = {PROCESSOR_PART: self.processor, LEDGER_PART: self.ledger, REORDER_PART: self.reorder}
        written, deleted = checkpoint_changes(sources, full=False)
        everything = checkpoint_changes(sources, full=True)[0] if self._log.wants_snapshot() else None
        self._log.append(offset, written, deleted, everything)
        self._offset = offset
