"""What runs inside a pool worker: read, parse and extract one file, recorded by the worker's own emitters.

The pool initializer builds the worker's state once per process; without an
EmitterConfig (`--no-monitoring`) the same work runs with nothing recorded.
"""

from __future__ import annotations

import ast
import os
import random
import signal
import time
from dataclasses import dataclass
from multiprocessing.synchronize import BoundedSemaphore
from time import perf_counter
from typing import Mapping

from emitters.config import EmitterConfig
from emitters.demo.calls import Breadcrumb, calls_in
from emitters.demo.faults import CRASH_WORKER, ERROR_BURST, ERROR_BURST_RATE, SLOW_PARSE, SLOW_PARSE_S, THROTTLE, THROTTLE_HOLD_S, InjectedError
from emitters.demo.topology import DEPENDS_ON
from emitters.emitter import Emitter
from emitters.sampler import SystemSampler

SAMPLE_INTERVAL_S = 2.0


@dataclass(frozen=True, slots=True)
class Outcome:
    """A task's result: the file's breadcrumbs, or the type of the error that stopped it."""

    breadcrumbs: tuple[Breadcrumb, ...] | None
    error_type: str | None = None


class _Worker:
    def __init__(self, config: EmitterConfig | None, throttle: BoundedSemaphore, component_config: Mapping[str, int]) -> None:
        self.throttle = throttle
        self.rng = random.Random()
        self.parser: Emitter | None = None
        self.extractor: Emitter | None = None
        if config is not None:
            self.parser = Emitter("parser", config=config)
            self.extractor = Emitter("extractor", config=config, component_config=component_config, depends_on=DEPENDS_ON["extractor"])
            SystemSampler(self.extractor, interval_s=SAMPLE_INTERVAL_S, host=False).start()  # a daemon thread: ends with the worker


_worker: _Worker | None = None  # this process's state, set by init_worker


def init_worker(config: EmitterConfig | None, throttle: BoundedSemaphore, component_config: Mapping[str, int]) -> None:
    """The pool initializer. Ctrl-C reaches the whole process group: only the main process acts on it."""
    global _worker
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _worker = _Worker(config, throttle, component_config)


def process_file(path: str, module: str, faults: frozenset[str]) -> Outcome:
    """Parse (op "parse", component parser), then extract the calls (op "extract", component extractor)."""
    worker = _worker
    if worker is None:
        raise RuntimeError("process_file runs in a pool made with init_worker")
    if CRASH_WORKER in faults:
        os._exit(1)  # the crash_worker fault: the pool is broken from now on
    started = perf_counter()
    try:
        tree = _parse(path, faults, worker.rng)
    except Exception as exc:  # any failure of one file is that file's outcome, never the worker's end
        if worker.parser is not None:
            worker.parser.record("parse", (perf_counter() - started) * 1000.0, ok=False, error_type=type(exc).__name__)
        return Outcome(None, type(exc).__name__)
    parsed = perf_counter()
    if worker.parser is not None:
        worker.parser.record("parse", (parsed - started) * 1000.0)
    try:
        if THROTTLE in faults and not _call_downstream(worker.throttle):
            error_type: str | None = "Throttled"
            breadcrumbs: tuple[Breadcrumb, ...] | None = None
        else:
            error_type, breadcrumbs = None, tuple(calls_in(tree, module))
    except Exception as exc:  # RecursionError on a pathologically deep tree, say
        error_type, breadcrumbs = type(exc).__name__, None
    if worker.extractor is not None:
        counters = {"calls_extracted": len(breadcrumbs)} if breadcrumbs is not None else None
        worker.extractor.record("extract", (perf_counter() - parsed) * 1000.0, ok=error_type is None, error_type=error_type, counters=counters)
    return Outcome(breadcrumbs, error_type)


def _parse(path: str, faults: frozenset[str], rng: random.Random) -> ast.Module:
    with open(path, "rb") as file:
        source = file.read()
    if SLOW_PARSE in faults:
        time.sleep(SLOW_PARSE_S)  # the fault: a slower parser
    if ERROR_BURST in faults and rng.random() < ERROR_BURST_RATE:
        raise InjectedError(f"error_burst fault injected while parsing {path}")
    return ast.parse(source, filename=path)


def _call_downstream(throttle: BoundedSemaphore) -> bool:
    """The throttle fault's downstream admits one call at a time: busy means refused, not queued."""
    if not throttle.acquire(block=False):
        return False
    try:
        time.sleep(THROTTLE_HOLD_S)  # the downstream call itself
    finally:
        throttle.release()
    return True
