"""Faults an operator injects into the demo, so that alerts, recommendations and the optimizer have something to fix.

`{prefix}:demo:faults` maps a fault kind to the epoch second it ends; a fault
is active while that is later than now. The main process reads the hash every
second and sends the active kinds with each task; the workers act on them.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Callable, Final, Mapping

import psutil
import redis

from schemas import Names
from schemas.control import DEMO_FAULTS

from emitters.errors import EmitterError

log = logging.getLogger("pipepulse.demo")

SLOW_PARSE: Final = "slow_parse"  # every parse takes SLOW_PARSE_S longer
ERROR_BURST: Final = "error_burst"  # ERROR_BURST_RATE of the parses raise InjectedError
MEMORY_GROWTH: Final = "memory_growth"  # the main process retains MEMORY_GROWTH_BYTES_PER_S more every second
CRASH_WORKER: Final = "crash_worker"  # the next task's worker exits at once: the pool is broken until restarted
THROTTLE: Final = "throttle"  # a downstream that admits one call at a time: concurrent extracts fail "Throttled"
FAULT_KINDS: Final = DEMO_FAULTS  # defined with the other control names, so that the CLI validates the same kinds

SLOW_PARSE_S: Final = 0.05
ERROR_BURST_RATE: Final = 0.3
MEMORY_GROWTH_BYTES_PER_S: Final = 20 * 2**20
THROTTLE_HOLD_S: Final = 0.025  # the simulated downstream call
READ_INTERVAL_S: Final = 1.0


class InjectedError(EmitterError):
    """A parse failure made by the error_burst fault."""


def active_faults(stored: Mapping[bytes | str, bytes | str], now_s: float) -> dict[str, float]:
    """Kind -> end time of the faults still running; unknown kinds and unreadable times are ignored."""
    active: dict[str, float] = {}
    for raw_kind, raw_end in stored.items():
        kind = raw_kind.decode("utf-8", "replace") if isinstance(raw_kind, bytes) else raw_kind
        try:
            end_s = float(raw_end)
        except ValueError:
            continue
        if kind in FAULT_KINDS and end_s > now_s:
            active[kind] = end_s
    return active


class FaultWatcher:
    """Reads the fault hash every second on a thread, and holds the memory_growth ballast of the main process.

    Like the emitters it never raises into the pipeline: a failed read is logged once and keeps the last faults.
    """

    def __init__(self, client: redis.Redis, *, prefix: str, clock: Callable[[], float] = time.time) -> None:
        self._client = client
        self._key = Names(prefix).demo_faults
        self._clock = clock
        self._active: dict[str, float] = {}
        self.kinds: frozenset[str] = frozenset()  # what the pipeline reads: replaced whole, never mutated
        self._crashed_for: float | None = None  # the end time of the crash_worker fault that already crashed a worker
        self._ballast: list[bytes] = []
        self._grown_at_s: float | None = None
        self._max_ballast_bytes = psutil.virtual_memory().total // 4  # a demo fault must not take the host down
        self._failing = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def read(self) -> None:
        """Read the hash once; grow or release the ballast."""
        now_s = self._clock()
        try:
            stored = self._client.hgetall(self._key)
        except (redis.RedisError, OSError) as exc:
            if not self._failing:
                self._failing = True
                log.warning("reading demo faults failed, keeping the last ones: %s", exc)
            stored = None
        else:
            if self._failing:
                self._failing = False
                log.info("reading demo faults works again")
        if stored is not None:
            self._active = active_faults(stored, now_s)
        else:
            self._active = {kind: end_s for kind, end_s in self._active.items() if end_s > now_s}
        self.kinds = frozenset(self._active)
        self._grow(now_s)

    def take_crash(self) -> bool:
        """True once per crash_worker fault (per end time written): only the next task crashes its worker."""
        end_s = self._active.get(CRASH_WORKER)
        if end_s is None or end_s == self._crashed_for:
            return False
        self._crashed_for = end_s
        return True

    @property
    def ballast_bytes(self) -> int:
        return sum(map(len, self._ballast))

    def _grow(self, now_s: float) -> None:
        if MEMORY_GROWTH not in self._active:
            self._ballast.clear()
            self._grown_at_s = None
            return
        elapsed_s = READ_INTERVAL_S if self._grown_at_s is None else now_s - self._grown_at_s
        self._grown_at_s = now_s
        size = min(int(MEMORY_GROWTH_BYTES_PER_S * elapsed_s), self._max_ballast_bytes - self.ballast_bytes)
        if size > 0:
            self._ballast.append(b"\x01" * size)  # written, so the pages are resident

    def start(self) -> FaultWatcher:
        self.read()
        self._thread = threading.Thread(target=self._run, name="pipepulse-demo-faults", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(READ_INTERVAL_S):
            self.read()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(2.0)
        self._ballast.clear()
