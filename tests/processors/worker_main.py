"""A worker process for the runtime tests: `python -m tests.processors.worker_main URL PREFIX [options]`.

`--crash-stage S --crash-at N` SIGKILLs the process the Nth time the runtime
reaches stage S ("read", "applied", "committing"): the deterministic crash points.
`--poison C` wraps the statistics processor in one that raises on component C.
`--monitor` runs the whole monitor (statistics, alerts, forecasts, health) with the shipped rules.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from types import FrameType
from typing import Sequence

from schemas.names import Names

from processors.contract import BatchItem, Item, Output, Processor
from processors.monitor import MonitorProcessor, MonitorSettings
from processors.rules import load_rules
from processors.runtime import RuntimeSettings, Worker, tune_gc
from processors.stats import StatsProcessor


class PoisonedStats(StatsProcessor):
    """The real statistics processor, except that it raises on one component's batches."""

    def __init__(self, poison: str) -> None:
        super().__init__()
        self.poison = poison

    def apply(self, items: Sequence[Item]) -> list[Output]:
        if any(isinstance(i, BatchItem) and i.decoded.envelope.component == self.poison for i in items):
            raise RuntimeError(f"cannot digest {self.poison}")
        return super().apply(items)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("prefix")
    parser.add_argument("--crash-stage")
    parser.add_argument("--crash-at", type=int, default=1)
    parser.add_argument("--poison")
    parser.add_argument("--read-count", type=int, default=64)
    parser.add_argument("--lease-ttl", type=float, default=5.0)
    parser.add_argument("--max-deliveries", type=int, default=5)
    parser.add_argument("--monitor", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    seen = {"n": 0}

    def on_stage(stage: str) -> None:
        if stage == args.crash_stage:
            seen["n"] += 1
            if seen["n"] >= args.crash_at:
                os.kill(os.getpid(), signal.SIGKILL)

    tune_gc()
    processor: Processor = PoisonedStats(args.poison) if args.poison else StatsProcessor()
    if args.monitor:
        processor = MonitorProcessor(MonitorSettings(rules=load_rules()))
    settings = RuntimeSettings(read_count=args.read_count, lease_ttl_s=args.lease_ttl, max_deliveries=args.max_deliveries, backoff_max_s=0.5, metrics_interval_s=0.2)
    worker = Worker(url=args.url, names=Names(args.prefix), processor=processor, settings=settings, on_stage=on_stage)
    print(f"lease-token {worker.lease_token}", flush=True)
    stop = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    worker.run(stop)


if __name__ == "__main__":
    main()
