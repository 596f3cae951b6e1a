"""`python -m emitters.demo`: run the detection pipeline over a real source tree until SIGTERM or Ctrl-C.

Reads PIPEPULSE_* (redis URL, prefix) like any instrumented program; with
`--once` it processes every file once and prints one JSON line of throughput.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import sysconfig
import tempfile
import threading
from contextlib import ExitStack
from pathlib import Path
from time import perf_counter
from types import FrameType
from typing import Callable, Sequence

from schemas.control import SETTINGS

from emitters.config import EmitterConfig
from emitters.demo.instruments import Instruments
from emitters.demo.pipeline import Pipeline
from emitters.demo.tree import Churner, copy_sources, find_sources

log = logging.getLogger("pipepulse.demo")


def _within(low: float, high: float, kind: Callable[[str], float] = int) -> Callable[[str], float]:
    def parse(text: str) -> float:
        value = kind(text)
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be within {low:g}..{high:g}, got {text}")
        return value

    return parse


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    concurrency, cache_size = SETTINGS["concurrency"], SETTINGS["cache_size"]
    parser = argparse.ArgumentParser(prog="python -m emitters.demo", description=__doc__)
    parser.add_argument("--source", type=Path, default=None, help="the tree to read (default: this interpreter's standard library)")
    parser.add_argument("--work-dir", type=Path, default=None, help="where the copies that churn edits live (default: a temp dir, removed at exit)")
    parser.add_argument("--max-files", type=_within(1, 10**6), default=3000, help="at most this many .py files (default 3000)")
    parser.add_argument("--concurrency", type=_within(concurrency.minimum, concurrency.maximum), default=2, help="worker processes (default 2)")
    parser.add_argument("--cache-size", type=_within(cache_size.minimum, cache_size.maximum), default=256, help="breadcrumb cache entries (default 256)")
    parser.add_argument("--churn-per-s", type=_within(0, 10_000, float), default=20.0, help="files touched per second (default 20)")
    parser.add_argument("--once", action="store_true", help="process every file once, print one JSON line of throughput, exit")
    parser.add_argument("--no-monitoring", action="store_true", help="no emitters, control or faults: the same work uninstrumented")
    parser.add_argument("--json-breadcrumbs", type=Path, default=None, help="with --once: write {path: [[caller, callee, line], ...]} here")
    args = parser.parse_args(argv)
    if args.json_breadcrumbs is not None and not args.once:
        parser.error("--json-breadcrumbs needs --once")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    source: Path = args.source or Path(sysconfig.get_paths()["stdlib"])
    files = find_sources(source, args.max_files)
    if not files:
        log.error("no .py files under %s", source)
        return 2
    stop = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    with ExitStack() as stack:
        root = source  # --once edits nothing, so it reads the originals
        if not args.once:
            root = args.work_dir or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="pipepulse-demo-")))
            copy_sources(source, files, root)
        instruments = None
        if not args.no_monitoring:
            instruments = Instruments(EmitterConfig.from_env(), concurrency=args.concurrency, cache_size=args.cache_size)
            stack.callback(instruments.close)
            instruments.start()
        pipeline = Pipeline(root, files, concurrency=args.concurrency, cache_size=args.cache_size, instruments=instruments)
        stack.callback(pipeline.close)  # closed before the instruments: the workers deliver first
        log.info("demo pipeline: %d files under %s, monitoring %s", len(files), source, "off" if instruments is None else "on")
        if not args.once:
            pipeline.run(stop, Churner(root, files), args.churn_per_s)
            return 0
        started = perf_counter()
        cycle = pipeline.step(stop)
        seconds = perf_counter() - started
        if args.json_breadcrumbs is not None:
            found = {path: [[b.caller, b.callee, b.line] for b in crumbs] for path, crumbs in sorted(pipeline.breadcrumbs().items())}
            args.json_breadcrumbs.write_text(json.dumps(found, indent=1))
    files_done = cycle.files_processed + cycle.files_failed
    print(json.dumps({"files": files_done, "calls": cycle.calls, "seconds": round(seconds, 3), "files_per_s": round(files_done / seconds, 1)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
