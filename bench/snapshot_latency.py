"""Emit-to-snapshot latency: from an event's record() to the moment its window's statistics can be read.

    python bench/snapshot_latency.py [--rate 100000] [--seconds 60]

On a fresh embedded server, starts the runtime (Worker with StatsProcessor and
the Ticker, in a process) and one emitting process that calls `record()` at
`--rate` events/s in chunks of 1,000, noting each chunk's wall-clock span (the
emit times: record() stamps events with the same clock). This process blocks on
XREAD of `pipepulse:stats` and notes the wall time each window snapshot became
readable. An event's latency is (that time for the snapshot of the window that
contains it) - (its emit time, a chunk's midpoint, within 5 ms at 100k/s); only
windows the emission covered entirely count. Prints p50 and p99 over events
(target p99 <= window + 500 ms = 10.5 s), the close delay per window (readable
time - window end: the part the pipeline adds to the window itself), and,
as a check, the events each snapshot counted against the events emitted in it.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from dataclasses import dataclass
from multiprocessing.synchronize import Event as ProcessEvent
from pathlib import Path
from typing import Any

import numpy as np
import redis

from emitters import Emitter, EmitterConfig
from pipeline_throughput import CTX, NAMES, run_processor, wait_for
from processors.embedded import EmbeddedServer, ServerSettings
from processors.stats import StatsSettings
from workload import operation_calls, paced

CHUNK = 1_000
Chunk = tuple[float, float, int]  # wall-clock start and end of a chunk of record() calls, and how many


@dataclass(frozen=True, slots=True)
class Snapshot:
    end_s: float
    readable_s: float  # wall time XREAD returned it
    count: int  # operations the snapshot counted, pipeline-wide


def emit(url: str, rate: float, seconds: float, ready: Any, go: ProcessEvent, results: Any) -> None:
    em = Emitter("stage-0", redis_url=url, config=EmitterConfig(buffer_max_events=1_000_000))
    calls = operation_calls(20 * CHUNK, seed=0)
    record = em.record
    ready.put(True)
    go.wait()
    chunks: list[Chunk] = []
    for recorded in paced(seconds, rate, CHUNK):
        offset = recorded % len(calls)
        began = time.time()
        for call in calls[offset : offset + CHUNK]:
            record(*call)
        chunks.append((began, time.time(), CHUNK))
    em.flush(60)
    results.put((chunks, em.stats().dropped_total))
    em.close()


def weighted_quantile(values: np.ndarray, weights: np.ndarray, q: float) -> float:
    order = np.argsort(values)
    cumulative = np.cumsum(weights[order])
    return float(values[order][np.searchsorted(cumulative, q * cumulative[-1])])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=100_000)
    parser.add_argument("--seconds", type=float, default=60.0)
    args = parser.parse_args()
    window_s = StatsSettings().window_s
    snapshots: list[Snapshot] = []
    with tempfile.TemporaryDirectory() as data_dir, EmbeddedServer(ServerSettings(data_dir=Path(data_dir), appendonly=False)) as server:
        client = redis.Redis.from_url(server.url, socket_timeout=10)
        stop = CTX.Event()
        processor = CTX.Process(target=run_processor, args=(server.url, stop), name="processor")
        processor.start()
        wait_for(lambda: client.exists(NAMES.events) and client.xinfo_groups(NAMES.events), 30, "the processor's consumer group")
        ready, results, go = CTX.Queue(), CTX.Queue(), CTX.Event()
        emitter = CTX.Process(target=emit, args=(server.url, args.rate, args.seconds, ready, go, results), name="emitter")
        emitter.start()
        ready.get(timeout=60)
        go.set()
        last_id = "0-0"
        until = time.time() + args.seconds + 3.0  # the last fully covered window closes within a second of its end
        while time.time() < until:
            response: list[Any] = client.xread({NAMES.stream("stats"): last_id}, block=100, count=100)  # type: ignore[assignment]
            readable_s = time.time()
            for entry_id, fields in response[0][1] if response else []:
                document = json.loads(fields[b"json"])
                snapshots.append(Snapshot(float(fields[b"end_s"]), readable_s, int(document["pipeline"]["count"])))
                last_id = entry_id
        chunks, dropped = results.get(timeout=60)
        emitter.join(timeout=10)
        stop.set()
        processor.join(timeout=10)
        client.close()

    first_s, last_s = chunks[0][0], chunks[-1][1]
    covered = [s for s in snapshots if s.end_s - window_s >= first_s and s.end_s <= last_s]
    mids = np.array([(a + b) / 2 for a, b, _ in chunks])
    sizes = np.array([n for _, _, n in chunks], dtype=np.float64)
    latencies, weights, checks = [], [], []
    for snap in covered:
        inside = (mids >= snap.end_s - window_s) & (mids < snap.end_s)
        latencies.append(snap.readable_s - mids[inside])
        weights.append(sizes[inside])
        checks.append(snap.count / max(sizes[inside].sum(), 1))
    if not covered:
        raise SystemExit(f"no window was covered entirely by {args.seconds:g} s of emission: give more --seconds")
    values, w = np.concatenate(latencies), np.concatenate(weights)
    delays = sorted(s.readable_s - s.end_s for s in covered)
    target = window_s + 0.5
    p50, p99 = weighted_quantile(values, w, 0.50), weighted_quantile(values, w, 0.99)
    print(f"{args.rate:,.0f} events/s for {args.seconds:g} s; {len(covered)} windows of {window_s} s fully covered, {int(w.sum()):,} events in them; dropped {dropped}")
    print(f"emit-to-snapshot latency p50:  {p50:7.3f} s")
    print(f"emit-to-snapshot latency p99:  {p99:7.3f} s  (target <= {target:.1f} s: {'met' if p99 <= target else 'NOT met'})")
    print(f"emit-to-snapshot latency max:  {float(values.max()):7.3f} s")
    print(f"close delay (readable - window end): min {delays[0]:.3f} s, median {delays[len(delays) // 2]:.3f} s, max {delays[-1]:.3f} s (grace {StatsSettings().grace_s} s)")
    print(f"events counted by each snapshot / emitted in its window: {', '.join(f'{c:.3f}' for c in checks)}")


if __name__ == "__main__":
    main()
