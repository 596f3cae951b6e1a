"""End to end on one machine: two emitting processes, the embedded server, and the statistics processor in its own process.

    python bench/pipeline_throughput.py [--rate 500000 [250000 ...]] [--seconds 20]

For each `--rate` (events/s in total, shared by the two emitting processes), on a
fresh embedded server: starts the runtime (Worker with StatsProcessor, or with
`--processor monitor` the MonitorProcessor, and the Ticker, as `pipepulse run` does) in a process, then two processes that each call
`Emitter.record()` with five operations and lognormal durations, paced in chunks
of 1,000, for `--seconds`. Samples every 0.25 s the processor's committed
`events_total` (its checkpoint's ledger counters, written in the same MULTI as
the XACK), the consumer group's lag (XINFO GROUPS) and CPU times. Prints the
rate the processor folded during the emission, the lag over the run (bounded:
the processor folded at least 98 % of the offered rate, the lag's least-squares
slope over the second half is at most 2 % of the rate, and it never exceeds one
second of input), the processor's CPU per event, what each role and anything
else on the machine used of its cores, and, as the peer measured in the same
run, the server's raw ingest rate of the same batches pre-encoded and XADDed
by plain redis-py pipelines. Target: >= 500,000 events/s with the lag bounded.
Give several rates to find the sustainable one.
"""

from __future__ import annotations

import argparse
import logging
import multiprocessing
import queue
import tempfile
import threading
import time
from dataclasses import dataclass
from multiprocessing.synchronize import Event as ProcessEvent
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import redis

from emitter_throughput import raw_ingest_rate
from emitters import Emitter, EmitterConfig
from emitters.testing import wait_until
from processors.embedded import EmbeddedServer, ServerSettings
from processors.runtime import Ticker, Worker, committed_counters, tune_gc
from processors.monitor import MonitorProcessor, MonitorSettings
from processors.rules import load_rules
from processors.stats import StatsProcessor
from schemas.codec import PAYLOAD_FIELD, decode_columns
from schemas.names import Names
from workload import operation_calls, paced

NAMES = Names("pipepulse")
CHUNK = 1_000
EMITTERS = 2
SAMPLE_S = 0.25
MAX_LAG_GROWTH = 0.02  # of the rate: a processor slower than its input shows a lag growing by the difference
CTX = multiprocessing.get_context("spawn")


@dataclass(frozen=True, slots=True)
class EmitterResult:
    recorded: int
    delivered: int
    dropped: int
    cpu_s: float


@dataclass(frozen=True, slots=True)
class Sample:
    t: float  # seconds since the emitters started
    events: int  # committed by the processor
    entries: int
    lag: int | None  # entries not yet delivered to the group
    processor_cpu_s: float
    server_cpu_s: float
    host_busy_s: float  # every process on the machine, ours included
    own_cpu_s: float  # this process (the sampler)


def run_processor(url: str, stop: ProcessEvent, kind: str) -> None:
    """The runtime as `pipepulse run` starts it: the ticker in a thread, the worker in the main thread."""
    logging.basicConfig(level=logging.WARNING)
    local = threading.Event()

    def bridge() -> None:  # the runtime waits on a threading.Event; the parent sets a process-shared one
        stop.wait()
        local.set()

    threading.Thread(target=bridge, daemon=True).start()
    ticker = threading.Thread(target=Ticker(url=url, names=NAMES).run, args=(local,))
    ticker.start()
    tune_gc()  # as `pipepulse run` does
    processor = StatsProcessor() if kind == "stats" else MonitorProcessor(MonitorSettings(rules=load_rules()))
    Worker(url=url, names=NAMES, processor=processor).run(local)
    ticker.join()


def emit(url: str, component: str, rate: float, seconds: float, seed: int, ready: Any, go: ProcessEvent, results: Any) -> None:
    """One instrumented process: record() paced at `rate` for `seconds`, then deliver everything."""
    em = Emitter(component, redis_url=url, config=EmitterConfig(buffer_max_events=4_000_000))
    calls = operation_calls(20 * CHUNK, seed)
    record = em.record
    ready.put(component)
    go.wait()
    cpu_before = time.process_time()
    recorded = 0
    for offset in paced(seconds, rate, CHUNK):
        for call in calls[offset % len(calls) : offset % len(calls) + CHUNK]:
            record(*call)
        recorded += CHUNK
    em.flush(120)
    stats = em.stats()
    results.put((recorded, stats.delivered_total, stats.dropped_total, time.process_time() - cpu_before))
    em.close()


def cpu_s(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system + times.children_user + times.children_system)


def host_busy_s() -> float:
    times = psutil.cpu_times()
    return float(sum(times) - times.idle - getattr(times, "iowait", 0.0))


def committed(client: redis.Redis, kind: str) -> tuple[int, int]:
    """(events_total, entries_total) as of the processor's last commit."""
    counters = committed_counters(client, NAMES, kind)
    return int(counters.get("events_total", 0)), int(counters.get("entries_total", 0))


def group_lag(client: redis.Redis, kind: str) -> tuple[int | None, int]:
    groups: list[dict[str, Any]] = client.xinfo_groups(NAMES.events)
    group = next(g for g in groups if g["name"].decode() == NAMES.group(kind))
    return group.get("lag"), int(group["pending"])


def run_at(rate: float, seconds: float, drain_timeout_s: float, kind: str) -> bool:
    """One run on a fresh server; prints its figures block and returns whether it was sustained."""
    with tempfile.TemporaryDirectory() as data_dir, EmbeddedServer(ServerSettings(data_dir=Path(data_dir), appendonly=False)) as server:
        client = redis.Redis.from_url(server.url, socket_timeout=30)
        server_process = psutil.Process(int(client.info("server")["process_id"]))
        stop = CTX.Event()
        processor = CTX.Process(target=run_processor, args=(server.url, stop, kind), name="processor")
        processor.start()
        wait_until(lambda: client.exists(NAMES.events) and client.xinfo_groups(NAMES.events), 30, "the processor's consumer group")
        ready, results, go = CTX.Queue(), CTX.Queue(), CTX.Event()
        emitters = [
            CTX.Process(target=emit, args=(server.url, f"stage-{i}", rate / EMITTERS, seconds, i, ready, go, results), name=f"emitter-{i}") for i in range(EMITTERS)
        ]
        for p in emitters:
            p.start()
        for _ in emitters:
            ready.get(timeout=60)
        processor_process = psutil.Process(processor.pid)

        def sample(t0: float) -> Sample:
            events, entries = committed(client, kind)
            lag, _ = group_lag(client, kind)
            return Sample(time.perf_counter() - t0, events, entries, lag, cpu_s(processor_process), cpu_s(server_process), host_busy_s(), cpu_s(psutil.Process()))

        t0 = time.perf_counter()
        first = sample(t0)
        go.set()
        samples = [first]
        while samples[-1].t < seconds:
            time.sleep(max(0.0, min(SAMPLE_S, seconds - samples[-1].t)))
            samples.append(sample(t0))
        end_of_emission = samples[-1]
        outcomes: list[EmitterResult] = []
        deadline = time.monotonic() + drain_timeout_s
        while len(outcomes) < EMITTERS and time.monotonic() < deadline:
            try:
                outcomes.append(EmitterResult(*results.get(timeout=SAMPLE_S)))
            except queue.Empty:
                pass
        for p in emitters:
            p.join(timeout=max(1.0, deadline - time.monotonic()))
        drained: Sample | None = None
        while time.monotonic() < deadline:
            lag, pending = group_lag(client, kind)
            if lag == 0 and pending == 0:
                drained = sample(t0)
                break
            time.sleep(0.05)
        stop.set()
        processor.join(timeout=10)
        entries: list[tuple[bytes, dict[bytes, bytes]]] = client.xrange(NAMES.events, count=3_000)  # type: ignore[assignment]
        payloads = [fields[PAYLOAD_FIELD] for _, fields in entries if PAYLOAD_FIELD in fields][-2_000:]
        per_payload = sum(decode_columns(p).event_count for p in payloads) / len(payloads)
        peer = raw_ingest_rate(client, payloads, per_payload, "bench:raw")
        client.close()

    recorded = sum(o.recorded for o in outcomes)
    delivered = sum(o.delivered for o in outcomes)
    dropped = sum(o.dropped for o in outcomes)
    window_s = end_of_emission.t - first.t
    processed_rate = (end_of_emission.events - first.events) / window_s
    offered_rate = delivered / seconds
    events_per_entry = max(end_of_emission.events - first.events, 1) / max(end_of_emission.entries - first.entries, 1)
    second_half = [s for s in samples if s.t >= seconds / 2]
    growth = float(np.polyfit([s.t for s in second_half], [(s.lag or 0) * events_per_entry for s in second_half], 1)[0])  # events/s
    max_lag = max(s.lag or 0 for s in samples)
    kept_pace = processed_rate >= (1 - MAX_LAG_GROWTH) * offered_rate and growth <= MAX_LAG_GROWTH * rate
    bounded = kept_pace and max_lag * events_per_entry <= rate and drained is not None
    last = drained or samples[-1]
    cpu_per_event_us = (last.processor_cpu_s - first.processor_cpu_s) / max(last.events - first.events, 1) * 1e6
    quarters = [min(samples, key=lambda s: abs(s.t - seconds * q / 4)) for q in (1, 2, 3, 4)]

    print(f"\n== {rate:,.0f} events/s for {seconds:g} s: {EMITTERS} emitting processes, processor process, embedded server; {psutil.cpu_count()} cores")
    print(f"recorded {recorded:,}, delivered {delivered:,}, dropped {dropped:,} (emitters' own count)")
    print(f"offered (delivered / s):             {offered_rate:12,.0f} events/s")
    print(f"processed during the emission:       {processed_rate:12,.0f} events/s  (committed by the processor; target >= 500,000 with lag bounded)")
    print(f"lag at 25/50/75/100 % of the run:    {' / '.join(f'{(s.lag or 0) * events_per_entry:,.0f}' for s in quarters)} events  ({events_per_entry:.0f} events per entry)")
    print(f"max lag:                             {max_lag:12,} entries = {max_lag * events_per_entry / rate:.2f} s of input")
    print(f"lag growth over the second half:     {growth:12,.0f} events/s  (least-squares slope)")
    verdict = "BOUNDED" if bounded else "NOT bounded"
    drain = f"drained {last.t - end_of_emission.t:.1f} s after the emission" if drained else f"not drained within {drain_timeout_s:g} s"
    print(f"lag: {verdict} (processed >= {1 - MAX_LAG_GROWTH:.0%} of offered, second-half growth <= {MAX_LAG_GROWTH:.0%} of the rate, max lag <= 1 s of input); {drain}")
    print(f"processor CPU per event:             {cpu_per_event_us:12.2f} us  (whole run to drained, incl. commits and ticker)")
    emitter_cores = sum(o.cpu_s for o in outcomes) / seconds
    processor_cores = (end_of_emission.processor_cpu_s - first.processor_cpu_s) / window_s
    server_cores = (end_of_emission.server_cpu_s - first.server_cpu_s) / window_s
    host_cores = (end_of_emission.host_busy_s - first.host_busy_s) / window_s
    own_cores = (end_of_emission.own_cpu_s - first.own_cpu_s) / window_s
    other_cores = max(0.0, host_cores - emitter_cores - processor_cores - server_cores - own_cores)
    print(f"cores used during the emission:      emitters {emitter_cores:.2f}, processor {processor_cores:.2f}, server {server_cores:.2f}, sampler {own_cores:.2f}")
    print(f"other load on the machine:           {other_cores:12.2f} cores  (not this benchmark's; above ~0.1 the figures are perturbed)")
    print(f"server raw ingest (peer):            {peer:12,.0f} events/s  (same batches, pre-encoded, pipelined)")
    print(f"ratio processed / raw ingest:        {processed_rate / peer:12.2f}")
    return bounded and dropped == 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, nargs="+", default=[500_000], help="one or more total rates (events/s), each run on a fresh server")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--processor", choices=("stats", "monitor"), default="stats", help="the statistics alone, or the whole monitor `pipepulse run` runs (statistics, alerts, forecasts, health)")
    parser.add_argument("--drain-timeout", type=float, default=60.0, help="longest wait for the backlog after the emission")
    args = parser.parse_args()
    verdicts = {rate: run_at(rate, args.seconds, args.drain_timeout, args.processor) for rate in args.rate}
    if len(verdicts) > 1:
        sustained = [rate for rate, ok in verdicts.items() if ok]
        print(f"\nsustained (lag bounded, nothing dropped): {', '.join(f'{r:,.0f}' for r in sustained) or 'none'}; highest {max(sustained, default=0):,.0f} events/s")


if __name__ == "__main__":
    main()
