"""Testing aids: an in-memory sink, so users can test their own instrumented code without Redis,
and `wait_until`, to await a condition with a deadline rather than sleep.

>>> sink = MemorySink()
>>> em = Emitter("parser", sink=sink)
>>> em.record("parse_file", duration_ms=3.0); em.flush()
>>> [e.operation for e in sink.events if isinstance(e, OperationEvent)]
['parse_file']
"""

from __future__ import annotations

import threading
import time
from typing import Callable, Sequence, TypeVar

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


T = TypeVar("T")


def wait_until(condition: Callable[[], T], timeout_s: float = 10.0, what: str = "condition", interval_s: float = 0.01) -> T:
    """Poll `condition` until it returns something truthy, and return that; TimeoutError naming `what` at the deadline."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout_s:g} s waiting for {what}")
        time.sleep(interval_s)
