"""Peak memory of the statistics processor with many active series over an hour of event time.

    python bench/processor_memory.py [--components 50] [--operations 20] [--events-per-series 2] [--minutes 60]

Pure: no Redis. Every simulated second each of `--components` components sends
one batch holding `--events-per-series` events of each of its `--operations`
operations (so components x operations active series, 1,000 by default), and a
tick follows; each second's entries go through `processors.runtime.prepare` and
`StatsProcessor.apply`, then `take_changes()` as the runtime's commit would.
Prints the peak RSS while folding and the process's high-water mark including
one full `snapshot()` (target <= 200 MB), against the same interpreter's RSS with
everything imported but no processor (the peer), the state size as checkpoint
parts of `snapshot()` and their packed bytes, and how fast simulated time went.
The state is steady after about 16 minutes of event time (the 15 minute
roll-up is full); the default hour takes about 14 minutes on 2 cores, mostly
the live views the processor renders at every tick.
"""

from __future__ import annotations

import argparse
import math
import resource
import time

import psutil

from processors.contract import Output
from processors.ledger import Ledger
from processors.intake import prepare
from processors.stats import StatsProcessor
from schemas.checks import Limits
from schemas.codec import pack
from workload import Operation, one_second, operation_calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--components", type=int, default=50)
    parser.add_argument("--operations", type=int, default=20, help="operations per component")
    parser.add_argument("--events-per-series", type=int, default=2, help="events per series per simulated second")
    parser.add_argument("--minutes", type=float, default=60.0, help="simulated event time")
    parser.add_argument("--report-every", type=int, default=10, help="print RSS every this many simulated minutes")
    args = parser.parse_args()

    process = psutil.Process()
    operations = [Operation(f"op_{i:02d}", 0.05 * 1.5**i, 0.01, 0.8 if i % 4 == 0 else None) for i in range(args.operations)]
    calls = [operation_calls(args.operations * args.events_per_series * 16, seed=c, operations=operations) for c in range(args.components)]
    baseline_rss = process.memory_info().rss

    processor, ledger, limits = StatsProcessor(), Ledger(), Limits()
    outputs_total = 0
    peak_rss = baseline_rss
    seconds = math.ceil(args.minutes * 60)
    started = time.perf_counter()
    for second in range(seconds):
        prepared = prepare(one_second(second, calls, args.operations, args.events_per_series), ledger, limits)
        outputs: list[Output] = processor.apply(prepared.items)
        processor.take_changes()
        ledger.take_changes()
        outputs_total += len(outputs)
        if second % 10 == 9:
            peak_rss = max(peak_rss, process.memory_info().rss)
        if (second + 1) % (args.report_every * 60) == 0:
            print(f"  t = {(second + 1) / 60:5.1f} min: RSS {process.memory_info().rss / 2**20:6.1f} MB, {time.perf_counter() - started:6.1f} s elapsed", flush=True)
    elapsed = time.perf_counter() - started
    events = ledger.counters["events_total"]
    parts = processor.snapshot()  # what a full checkpoint writes (after a server restart), so part of the peak
    state_bytes = sum(len(pack(list(k))) + len(pack(v)) for k, v in parts.items())
    high_water = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux

    series = args.components * args.operations
    print(f"{series} series ({args.components} components x {args.operations} operations), {args.events_per_series} events/series/s, {args.minutes:g} min of event time")
    print(f"folded {events:,} events and {ledger.counters['ticks_total']:,} ticks into {outputs_total:,} outputs in {elapsed:.1f} s ({events / elapsed:,.0f} events/s, {args.minutes * 60 / elapsed:.0f}x real time)")
    print(f"peak RSS while folding:            {peak_rss / 2**20:8.1f} MB  (sampled every 10 s of event time; target <= 200)")
    print(f"peak RSS incl. a full snapshot():  {high_water / 2**20:8.1f} MB  (the process's high-water mark; target <= 200)")
    print(f"RSS before the processor (peer):   {baseline_rss / 2**20:8.1f} MB  (interpreter, numpy, redis, msgpack, workload)")
    print(f"processor's share:                 {(high_water - baseline_rss) / 2**20:8.1f} MB  ratio high-water / peer {high_water / baseline_rss:.2f}")
    print(f"state: {len(parts):,} checkpoint parts, {state_bytes / 2**20:.1f} MB packed")


if __name__ == "__main__":
    main()
