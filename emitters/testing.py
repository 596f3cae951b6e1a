"""An in-memory sink, so users can test their own instrumented code without Redis.

>>> sink = MemorySink()
>>> em = Emitter("parser", sink=sink)
>>> em.record("parse_file", duration_ms=3.0); em.flush()
>>> [e.operation for e in sink.events if isinstance(e, OperationEvent)]
['parse_file']
"""

from __future__ import annotations

import threading
from typing import Sequence

from schemas import Batch, Event, decode_batch

from emitters.errors import SinkError


class MemorySink:
    """Keeps every delivered payload; set `failing = True` to simulate an unreachable server."""

    def __init__(self) -> None:
        self.payloads: list[bytes] = []
        self.failing = False
        self._lock = threading.Lock()

    def send(self, payloads: Sequence[bytes]) -> None:
        if self.failing:
            raise SinkError("MemorySink is failing (simulated outage)")
        with self._lock:
            self.payloads.extend(payloads)

    def reopen(self) -> MemorySink:
        return self

    def close(self) -> None:
        pass

    @property
    def batches(self) -> list[Batch]:
        """Delivered batches, decoded and validated by the same codec the processors use."""
        with self._lock:
            payloads = list(self.payloads)
        return [decode_batch(p).batch for p in payloads]

    @property
    def events(self) -> list[Event]:
        return [event for batch in self.batches for event in batch.events]
