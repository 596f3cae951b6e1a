"""A small simulated function-call detection pipeline, so a newcomer sees numbers move.

`python -m emitters.demo` (started by `pipepulse run --demo`) runs five
components as threads, each with its own emitter, at a few hundred operations
per second with realistic latency spreads, cache hits and misses, errors and
domain counters. It reads PIPEPULSE_* settings like any instrumented program.
"""

from __future__ import annotations

import argparse
import random
import signal
import threading
from dataclasses import dataclass
from types import FrameType

from emitters.config import EmitterConfig
from emitters.emitter import Emitter
from emitters.sampler import SystemSampler


@dataclass(frozen=True, slots=True)
class Stage:
    component: str
    operation: str
    median_ms: float
    error_rate: float
    cache_hit_rate: float | None  # None: the stage has no cache
    counter: str


STAGES = (
    Stage("file_watcher", "scan", 0.4, 0.0, None, "files_seen"),
    Stage("parser", "parse", 3.0, 0.01, None, "files_parsed"),
    Stage("breadcrumb_cache", "lookup", 0.05, 0.0, 0.85, "lookups"),
    Stage("extractor", "extract", 6.0, 0.02, None, "calls_extracted"),
    Stage("detector", "detect", 1.5, 0.005, 0.6, "calls_detected"),
)


def run_stage(stage: Stage, config: EmitterConfig, rate_per_s: float, stop: threading.Event, seed: int) -> None:
    rng = random.Random(seed)
    with Emitter(stage.component, config=config, component_config={"rate_per_s": rate_per_s}) as emitter:
        emitter.lifecycle("started", {"rate_per_s": rate_per_s})
        sampler = SystemSampler(emitter, interval_s=2.0, host=stage.component == "file_watcher").start()
        while not stop.wait(0.1):
            for _ in range(max(1, round(rate_per_s / 10))):
                ok = rng.random() >= stage.error_rate
                hit = stage.cache_hit_rate is not None and rng.random() < stage.cache_hit_rate
                emitter.record(
                    stage.operation,
                    rng.lognormvariate(0.0, 0.6) * stage.median_ms * (0.2 if hit else 1.0),
                    ok=ok,
                    error_type=None if ok else rng.choice(("SyntaxError", "TimeoutError")),
                    cache_hits=int(hit),
                    cache_misses=int(stage.cache_hit_rate is not None and not hit),
                    counters={stage.counter: 1},
                )
        sampler.stop()
        emitter.lifecycle("stopped")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rate", type=float, default=200.0, help="operations per second per component")
    args = parser.parse_args()
    config = EmitterConfig.from_env()
    stop = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    threads = [threading.Thread(target=run_stage, args=(stage, config, args.rate, stop, i), name=stage.component) for i, stage in enumerate(STAGES)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


if __name__ == "__main__":
    main()
