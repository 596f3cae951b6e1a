"""The extractor's worker pool, rebuilt when its concurrency changes or its restart generation rises.

A broken pool (a worker died: BrokenProcessPool) is deliberately not healed
here: every dispatch fails until the control setting `restart_generation`
rises, which is what the optimizer's `restart_component` does. The demo thus
shows a failure that only the closed loop repairs.
"""

from __future__ import annotations

import logging
import multiprocessing
from concurrent.futures import Future, ProcessPoolExecutor

from emitters.config import EmitterConfig
from emitters.demo.tree import Change
from emitters.demo.worker import Outcome, init_worker, process_file

log = logging.getLogger("pipepulse.demo")


class Extractor:
    """A ProcessPoolExecutor of `concurrency` spawned workers, each with its own emitters (none if `config` is None).

    The caller keeps at most `concurrency` tasks in flight and calls `configure` only with none in flight.
    """

    def __init__(self, *, concurrency: int, config: EmitterConfig | None) -> None:
        self._context = multiprocessing.get_context("spawn")  # no fork with threads running; workers start clean
        self._throttle = self._context.BoundedSemaphore(1)  # the throttle fault's downstream, shared by every worker
        self._config = config
        self.concurrency = concurrency
        self.generation = 0
        self.pools_total = 0
        self._pool = self._build()

    def _build(self) -> ProcessPoolExecutor:
        self.pools_total += 1
        component_config = {"concurrency": self.concurrency, "restart_generation": self.generation}
        return ProcessPoolExecutor(
            max_workers=self.concurrency,
            mp_context=self._context,
            initializer=init_worker,
            initargs=(self._config, self._throttle, component_config),
        )

    def wants_rebuild(self, concurrency: int, generation: int) -> bool:
        return concurrency != self.concurrency or generation > self.generation

    def configure(self, concurrency: int, generation: int) -> bool:
        """Rebuild the pool for a new concurrency or a risen generation; True if it did."""
        rebuild = self.wants_rebuild(concurrency, generation)
        self.generation = generation  # a fall (an expired setting) is remembered too, so the next rise restarts
        if not rebuild:
            return False
        log.info("extractor pool: concurrency %d -> %d, restart generation %d", self.concurrency, concurrency, generation)
        self._pool.shutdown(wait=False)  # idle workers leave by themselves; the new pool need not wait for them
        self.concurrency = concurrency
        self._pool = self._build()
        return True

    def submit(self, change: Change, faults: frozenset[str]) -> Future[Outcome]:
        """Raises BrokenProcessPool while the pool is broken."""
        return self._pool.submit(process_file, change.path, change.module, faults)

    def close(self) -> None:
        """Wait for the workers to exit, so that their emitters deliver what they hold."""
        self._pool.shutdown(wait=True, cancel_futures=True)
