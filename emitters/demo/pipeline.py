"""The detection pipeline's main loop: scan, look up, dispatch, detect; churn between cycles.

file_watcher scans the tree for changed files; breadcrumb_cache answers files
whose content it has seen; the extractor pool parses the rest; detector
compares each file's new breadcrumbs with its previous ones. Control settings
are obeyed between dispatches; recording is skipped entirely without
instruments (`--no-monitoring`), which is the benchmark's baseline.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter, deque
from concurrent.futures import FIRST_COMPLETED, Future, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from time import perf_counter
from typing import Final, Sequence

from emitters.demo.cache import LruCache
from emitters.demo.calls import Breadcrumb
from emitters.demo.extractor import Extractor
from emitters.demo.faults import CRASH_WORKER
from emitters.demo.instruments import Instruments
from emitters.demo.tree import Change, Churner, Scanner
from emitters.demo.worker import Outcome

log = logging.getLogger("pipepulse.demo")

# Failures that say nothing about the file: it is tried again next cycle. Other errors (a SyntaxError) stand until it changes.
TRANSIENT_ERRORS: Final = frozenset({"BrokenProcessPool", "InjectedError", "Throttled"})
# A scan at most every half second: changes and new settings are acted on within a second, and an idle tree costs little.
CYCLE_S: Final = 0.5
_NO_FAULTS: Final[frozenset[str]] = frozenset()


@dataclass(frozen=True, slots=True, kw_only=True)
class Cycle:
    """What one step did."""

    files_seen: int
    files_changed: int
    cache_hits: int
    cache_misses: int
    files_processed: int  # breadcrumbs detected (from the cache or a worker)
    files_failed: int
    calls: int  # breadcrumbs of the files processed
    calls_added: int  # distinct breadcrumbs new since each file's previous version
    calls_removed: int


class Pipeline:
    """One tree, one cache, one pool. `step` runs one cycle (tests drive it); `run` loops with churn until stopped."""

    def __init__(self, root: Path, files: Sequence[str], *, concurrency: int, cache_size: int, instruments: Instruments | None = None) -> None:
        self.scanner = Scanner(root, files)
        self.cache: LruCache[tuple[str, bytes], tuple[Breadcrumb, ...]] = LruCache(cache_size)  # by module too: callers are qualified by it
        self.extractor = Extractor(concurrency=concurrency, config=instruments.config if instruments else None)
        self._instruments = instruments
        self._previous: dict[str, tuple[Breadcrumb, ...]] = {}  # relative path -> its breadcrumbs
        self._retry: dict[str, Change] = {}
        self._broken_pool_reported = 0  # the pool (by number) whose breaking was logged

    def breadcrumbs(self) -> dict[str, tuple[Breadcrumb, ...]]:
        """Every file's current breadcrumbs (files never parsed successfully are absent)."""
        return dict(self._previous)

    def step(self, stop: threading.Event | None = None) -> Cycle:
        tally: Counter[str] = Counter()
        self._obey()
        started = perf_counter()
        scan = self.scanner.scan()
        if self._instruments is not None:
            counters = {"files_seen": scan.seen, "files_changed": len(scan.changed)}
            self._instruments.file_watcher.record("scan", (perf_counter() - started) * 1000.0, counters=counters)
        work = self._retry | {change.relative: change for change in scan.changed}
        self._retry = {}
        misses: deque[Change] = deque()
        for change in work.values():
            breadcrumbs = self._lookup(change, tally)
            if breadcrumbs is None:
                misses.append(change)
            else:
                self._detect(change, breadcrumbs, tally)
        self._dispatch(misses, stop or threading.Event(), tally)
        return Cycle(
            files_seen=scan.seen,
            files_changed=len(scan.changed),
            cache_hits=tally["hits"],
            cache_misses=tally["misses"],
            files_processed=tally["processed"],
            files_failed=tally["failed"],
            calls=tally["calls"],
            calls_added=tally["calls_added"],
            calls_removed=tally["calls_removed"],
        )

    def run(self, stop: threading.Event, churner: Churner, churn_per_s: float) -> None:
        """Cycle until `stop`, touching `churn_per_s` files per second (on average) between cycles."""
        owed = 0.0
        last_s = time.monotonic()
        while not stop.is_set():
            began_s = time.monotonic()
            self.step(stop)
            owed += churn_per_s * (time.monotonic() - last_s)
            last_s = time.monotonic()
            churner.churn(int(owed))
            owed -= int(owed)
            stop.wait(max(0.0, CYCLE_S - (time.monotonic() - began_s)))  # a timer: the next scan is due

    def close(self) -> None:
        self.extractor.close()

    # -- the stages ----------------------------------------------------------

    def _lookup(self, change: Change, tally: Counter[str]) -> tuple[Breadcrumb, ...] | None:
        started = perf_counter()
        breadcrumbs = self.cache.get((change.module, change.digest))
        hit = breadcrumbs is not None
        tally["hits" if hit else "misses"] += 1
        if self._instruments is not None:
            self._instruments.cache.record("lookup", (perf_counter() - started) * 1000.0, cache_hits=int(hit), cache_misses=int(not hit))
        return breadcrumbs

    def _dispatch(self, queue: deque[Change], stop: threading.Event, tally: Counter[str]) -> None:
        """Send the misses to the pool, at most `concurrency` in flight; settings change only with none in flight."""
        in_flight: dict[Future[Outcome], tuple[Change, float]] = {}
        while queue or in_flight:
            if stop.is_set():
                queue.clear()  # stopping: finish what is in flight, start nothing new
            elif not in_flight:
                self._obey()
            while queue and len(in_flight) < self.extractor.concurrency and not self.extractor.wants_rebuild(*self._pool_settings()):
                change = queue.popleft()
                started = perf_counter()
                try:
                    in_flight[self.extractor.submit(change, self._faults())] = (change, started)
                except BrokenProcessPool:
                    self._failed(change, "BrokenProcessPool", started, tally, record=True)
            if not in_flight:
                continue
            done, _ = wait(in_flight, return_when=FIRST_COMPLETED)
            for future in done:
                change, started = in_flight.pop(future)
                try:
                    outcome = future.result()
                except Exception as exc:  # BrokenProcessPool when a worker died; the pipeline goes on either way
                    self._failed(change, type(exc).__name__, started, tally, record=True)
                    continue
                if outcome.breadcrumbs is None:
                    self._failed(change, outcome.error_type or "failed", started, tally, record=False)  # the worker recorded it
                else:
                    self.cache.put((change.module, change.digest), outcome.breadcrumbs)
                    self._detect(change, outcome.breadcrumbs, tally)

    def _detect(self, change: Change, breadcrumbs: tuple[Breadcrumb, ...], tally: Counter[str]) -> None:
        started = perf_counter()
        previous = self._previous.get(change.relative, ())
        self._previous[change.relative] = breadcrumbs
        new, old = set(breadcrumbs), set(previous)
        added, removed = len(new - old), len(old - new)
        tally.update(processed=1, calls=len(breadcrumbs), calls_added=added, calls_removed=removed)
        if self._instruments is not None:
            counters = {"files_processed": 1, "calls_detected": len(breadcrumbs), "calls_added": added, "calls_removed": removed}
            self._instruments.detector.record("detect", (perf_counter() - started) * 1000.0, counters=counters)

    def _failed(self, change: Change, error_type: str, started: float, tally: Counter[str], *, record: bool) -> None:
        tally["failed"] += 1
        if error_type == "BrokenProcessPool" and self._broken_pool_reported != self.extractor.pools_total:
            self._broken_pool_reported = self.extractor.pools_total
            log.warning("the extractor pool is broken (a worker died): every dispatch fails until restart_generation rises")
        if error_type in TRANSIENT_ERRORS:
            self._retry[change.relative] = change
        if record and self._instruments is not None:
            self._instruments.extractor.record("extract", (perf_counter() - started) * 1000.0, ok=False, error_type=error_type)

    # -- control and faults --------------------------------------------------

    def _pool_settings(self) -> tuple[int, int]:
        if self._instruments is None:
            return self.extractor.concurrency, self.extractor.generation
        control = self._instruments.extractor_control
        return control.get("concurrency"), control.get("restart_generation")

    def _obey(self) -> None:
        """Apply the control settings in use; called between dispatches."""
        if self._instruments is None:
            return
        self.extractor.configure(*self._pool_settings())
        cache_size = self._instruments.cache_control.get("cache_size")
        if cache_size != self.cache.max_entries:
            evicted = self.cache.resize(cache_size)
            log.info("breadcrumb cache resized to %d entries (%d evicted)", cache_size, evicted)

    def _faults(self) -> frozenset[str]:
        """The faults for the next task: crash_worker only once per fault, for one task."""
        if self._instruments is None:
            return _NO_FAULTS
        watcher = self._instruments.faults
        kinds = watcher.kinds
        if CRASH_WORKER in kinds:
            kinds = kinds - {CRASH_WORKER} | ({CRASH_WORKER} if watcher.take_crash() else set())
        return kinds
