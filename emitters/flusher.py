"""The background thread that turns buffered rows into batches and delivers them.

The host's threads only append to `buffer`; everything slow (encoding,
network, back-off, logging) happens here. A batch keeps its sequence number
until it is delivered, so sequence numbers reach the stream gap-free and a
consumer can tell a lost entry from a dropped event.
"""

from __future__ import annotations

import logging
import random
import threading
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from schemas.codec import pack, pack_envelope

from emitters.errors import SinkError
from emitters.sink import Sink

log = logging.getLogger("pipepulse.emitter")

Row = tuple[Any, ...]
# Batches sent per round trip: enough to carry 1M events/s at a 50 ms cadence.
ENTRIES_PER_SEND = 64
BACKOFF_MIN_S = 0.05
BACKOFF_MAX_S = 5.0


@dataclass(frozen=True, slots=True, kw_only=True)
class Identity:
    """Who is sending: fixed per emitter and process (a forked child gets a new one)."""

    producer_id: str
    component: str
    pid: int
    host: str


@dataclass(slots=True)
class Pending:
    seq: int
    payload: bytes
    events: int


class Flusher:
    """Drains `buffer` into batches; `counters` are read by Emitter.stats()."""

    def __init__(
        self,
        *,
        buffer: deque[Row],
        lock: threading.Lock,
        identity: Identity,
        sink: Sink,
        clock: Callable[[], float],
        batch_max_events: int,
        max_entry_bytes: int,
        flush_interval_s: float,
        on_cycle: Callable[[], None],
    ) -> None:
        self._buffer = buffer
        self._lock = lock
        self.identity = identity
        self._sink = sink
        self._clock = clock
        self._batch_max_events = batch_max_events
        self._max_entry_bytes = max_entry_bytes
        self._flush_interval_s = flush_interval_s
        self._on_cycle = on_cycle
        self._pending: list[Pending] = []
        self._seq = 0
        self._backoff_s = 0.0
        self.dropped_total = 0
        self.invalid_total = 0
        self.delivered_total = 0
        self.batches_total = 0
        self.send_errors_total = 0
        self._dropped_seen = 0
        self._dropping = False
        self._idle = threading.Condition(lock)
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"pipepulse-flusher-{identity.component}", daemon=True)

    # -- called from the host's threads ---------------------------------

    def start(self) -> None:
        self._thread.start()

    def record_drop(self) -> None:
        """Count one event dropped from the full buffer (caller holds the lock)."""
        self.dropped_total += 1

    @property
    def in_flight(self) -> int:
        return sum(p.events for p in self._pending)

    def flush(self, timeout_s: float) -> bool:
        """Wait until what is buffered now is delivered; False on timeout."""
        self._wake.set()
        with self._idle:
            return self._idle.wait_for(lambda: not self._buffer and not self._pending, timeout_s)

    def stop(self, timeout_s: float) -> bool:
        """Deliver what is left (within `timeout_s`), then end the thread."""
        delivered = self.flush(timeout_s) if self._thread.is_alive() else not self._buffer
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout_s)
        return delivered

    # -- the thread -----------------------------------------------------

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self._backoff_s or self._flush_interval_s)
            self._wake.clear()
            try:
                self._cycle()
            except Exception:  # noqa: BLE001 - the flusher must outlive any bug rather than stop delivery silently
                log.exception("pipepulse flusher cycle failed")

    def _cycle(self) -> None:
        self._on_cycle()
        while not self._stop.is_set():
            if not self._pending and not self._take():
                return
            try:
                self._sink.send([p.payload for p in self._pending])
            except SinkError as exc:
                self._failed(exc)
                return
            self._delivered()

    def _take(self) -> bool:
        """Move up to ENTRIES_PER_SEND batches from the buffer into pending."""
        with self._lock:
            count = min(len(self._buffer), self._batch_max_events * ENTRIES_PER_SEND)
            rows = [self._buffer.popleft() for _ in range(count)]
        for start in range(0, len(rows), self._batch_max_events):
            self._encode(rows[start : start + self._batch_max_events])
        self._note_drops()
        return bool(self._pending)

    def _encode(self, rows: Sequence[Row]) -> None:
        try:
            payload = self._envelope(rows)
        except (TypeError, ValueError, OverflowError):
            rows = self._packable(rows)
            payload = self._envelope(rows) if rows else b""
        if len(payload) > self._max_entry_bytes:
            if len(rows) == 1:
                self.invalid_total += 1
                log.warning("pipepulse dropped an event of %d bytes (cap %d)", len(payload), self._max_entry_bytes)
                return
            half = len(rows) // 2
            self._encode(rows[:half])
            self._encode(rows[half:])
            return
        if rows:
            self._pending.append(Pending(seq=self._seq, payload=payload, events=len(rows)))
            self._seq += 1

    def _envelope(self, rows: Sequence[Row]) -> bytes:
        ident = self.identity
        return pack_envelope(
            producer_id=ident.producer_id,
            seq=self._seq,
            sent_at_s=self._clock(),
            component=ident.component,
            pid=ident.pid,
            host=ident.host,
            dropped_total=self.dropped_total,
            invalid_total=self.invalid_total,
            rows=rows,
        )

    def _packable(self, rows: Sequence[Row]) -> list[Row]:
        """Rows msgpack can carry; the others are counted as invalid (slow path, only after a failure)."""
        kept = []
        for row in rows:
            try:
                pack(row)
            except (TypeError, ValueError, OverflowError) as exc:
                self.invalid_total += 1
                log.warning("pipepulse dropped an event it cannot encode: %s", exc)
            else:
                kept.append(row)
        return kept

    def _delivered(self) -> None:
        # Log before waking flush() callers, so that whoever waited sees the recovery already told.
        if self._backoff_s:
            log.warning("pipepulse delivery recovered")
            self._backoff_s = 0.0
        if self._dropping and self.dropped_total == self._dropped_seen:
            log.warning("pipepulse stopped dropping; %d events dropped in all", self.dropped_total)
            self._dropping = False
        with self._idle:
            self.delivered_total += sum(p.events for p in self._pending)
            self.batches_total += len(self._pending)
            self._pending.clear()
            self._idle.notify_all()

    def _failed(self, exc: SinkError) -> None:
        self.send_errors_total += 1
        if not self._backoff_s:
            log.warning("pipepulse delivery failing, buffering up to the bound: %s", exc)
        # Jitter spreads the reconnects of many processes after a server restart.
        self._backoff_s = min(BACKOFF_MAX_S, max(BACKOFF_MIN_S, self._backoff_s * 2)) * random.uniform(0.8, 1.2)

    def _note_drops(self) -> None:
        """Log once when dropping starts; `_delivered` logs once when it stops."""
        if self.dropped_total > self._dropped_seen and not self._dropping:
            log.warning("pipepulse buffer full: dropping the oldest events (the host is not slowed)")
            self._dropping = True
        self._dropped_seen = self.dropped_total
