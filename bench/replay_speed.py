"""How fast a replay folds a logged event stream through the statistics processor.

    python bench/replay_speed.py [--events 10000000] [--sim-rate 20000] [--producers 4] [--profile]

Writes `--events` operation events to a fresh embedded server's `pipepulse:events`
(no MAXLEN, so nothing is trimmed): pre-encoded batches of 1,000 events from
`--producers` producers taking turns, gap-free seq per producer, event times
advancing at `--sim-rate` events/s of simulated time so windows close, and a
tick entry at every simulated second. Then times `processors.replay.replay()`
as a whole (XRANGE reads of the log, decode, dedup, fold, writing the outputs
under another prefix, and the final comparison) and prints events/s (target
>= 1,000,000). Peers in the same run: the same log only read (XRANGE through
redis-py), and read + `prepare` (decode and dedup, no fold). `--profile` adds a
cProfile top-15 of a second, profiled replay (the timed one is not profiled).
The server holds about 40 bytes per event; with less free memory than three
times that, the event count is lowered and the script says so.
"""

from __future__ import annotations

import argparse
import os
import cProfile
import pstats
import tempfile
import time
from pathlib import Path

import psutil
import redis

from processors.embedded import EmbeddedServer, ServerSettings
from processors.ledger import Ledger
from processors.replay import replay
from processors.intake import prepare
from processors.runtime import read_derived, read_log, tune_gc
from processors.stats import StatsProcessor
from schemas.checks import Limits
from schemas.codec import PAYLOAD_FIELD, TICK_FIELD, pack
from schemas.names import Names
from workload import T0, batch_payload, operation_calls, operation_rows

BATCH = 1_000
BYTES_PER_EVENT = 40  # server memory per event, with slack (measured: 318 MB for 10M events)
ENTRIES_PER_PIPELINE = 64


def write_log(client: redis.Redis, stream: str, events: int, sim_rate: float, producers: int) -> int:
    """The log described above; returns the number of entries written."""
    pools = [operation_calls(10 * BATCH, seed=p) for p in range(producers)]
    entries = 0
    next_tick_s = 1
    pipe = client.pipeline(transaction=False)
    for b in range(events // BATCH):
        start_s = b * BATCH / sim_rate
        while start_s >= next_tick_s:  # the ticker's time mark, once per simulated second
            pipe.xadd(stream, {TICK_FIELD: pack(T0 + next_tick_s)})
            next_tick_s += 1
            entries += 1
        producer, seq = b % producers, b // producers
        offset = (seq * BATCH) % (len(pools[producer]) - BATCH)
        timestamps = [T0 + start_s + i / sim_rate for i in range(BATCH)]
        rows = operation_rows(pools[producer][offset : offset + BATCH], timestamps)
        pipe.xadd(stream, {PAYLOAD_FIELD: batch_payload(rows, producer_id=f"bench:{producer}", seq=seq, component=f"stage-{producer}")})
        entries += 1
        if len(pipe) >= ENTRIES_PER_PIPELINE:
            pipe.execute()
    pipe.xadd(stream, {TICK_FIELD: pack(T0 + events / sim_rate + 1)})  # closes the last window
    pipe.execute()
    return entries + 1


def read_only(client: redis.Redis, stream: str) -> int:
    """The peer: entries read through XRANGE, nothing decoded."""
    return sum(len(chunk) for chunk in read_log(client, stream))


def read_and_prepare(client: redis.Redis, stream: str) -> int:
    """The second peer: read and decode/dedup into processor items, no fold; returns events."""
    ledger, limits = Ledger(), Limits()
    for chunk in read_log(client, stream):
        prepare(chunk, ledger, limits)
    return int(ledger.counters["events_total"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--sim-rate", type=float, default=20_000, help="events per simulated second (sets how many windows close)")
    parser.add_argument("--producers", type=int, default=4)
    parser.add_argument("--profile", action="store_true", help="also print a cProfile top-15 of a replay")
    parser.add_argument("--decode-workers", type=int, default=max(1, min(4, (os.cpu_count() or 1) - 1)), help="as `pipepulse replay` (default: cores - 1)")
    args = parser.parse_args()

    available = psutil.virtual_memory().available
    events = args.events - args.events % BATCH
    if events * BYTES_PER_EVENT * 3 > available:
        events = int(available / (BYTES_PER_EVENT * 3)) // BATCH * BATCH
        print(f"only {available / 2**20:,.0f} MB available: lowered --events from {args.events:,} to {events:,}")
    names, out_names = Names("pipepulse"), Names("bench-replay")
    with tempfile.TemporaryDirectory() as data_dir, EmbeddedServer(ServerSettings(data_dir=Path(data_dir), appendonly=False)) as server:
        client = redis.Redis.from_url(server.url, socket_timeout=60)
        started = time.perf_counter()
        entries = write_log(client, names.events, events, args.sim_rate, args.producers)
        write_s = time.perf_counter() - started
        used_mb = int(client.info("memory")["used_memory"]) / 2**20

        started = time.perf_counter()
        read_entries = read_only(client, names.events)
        read_s = time.perf_counter() - started
        started = time.perf_counter()
        prepared_events = read_and_prepare(client, names.events)
        prepare_s = time.perf_counter() - started
        tune_gc()  # as `pipepulse replay` does
        started = time.perf_counter()
        serial = replay(client, names, out_names, StatsProcessor())
        serial_s = time.perf_counter() - started
        started = time.perf_counter()
        report = replay(client, names, out_names, StatsProcessor(), decode_workers=args.decode_workers)
        replay_s = time.perf_counter() - started
        assert serial.comparisons == report.comparisons
        windows = len(read_derived(client, out_names, "stats"))
        if args.profile:
            profiler = cProfile.Profile()
            profiler.runcall(replay, client, names, out_names, StatsProcessor())
        client.close()

    assert read_entries == entries and prepared_events == report.events == events, (read_entries, entries, prepared_events, report.events, events)
    print(f"log: {events:,} events in {entries:,} entries ({events / args.sim_rate:,.0f} s of event time, {windows} windows closed), server memory {used_mb:,.0f} MB, written in {write_s:.1f} s")
    replay_rate = events / replay_s
    print(f"replay() with {args.decode_workers} decode worker(s):          {replay_rate:12,.0f} events/s  {replay_s:6.1f} s  (target >= 1,000,000; read + decode + fold + write)")
    print(f"replay() decoding in-process:                  {events / serial_s:12,.0f} events/s  {serial_s:6.1f} s")
    print(f"peer: read + prepare (decode, dedup), no fold:   {events / prepare_s:12,.0f} events/s  {prepare_s:6.1f} s")
    print(f"peer: XRANGE read only:                          {events / read_s:12,.0f} events/s  {read_s:6.1f} s")
    print(f"ratio replay / read+prepare: {replay_rate * prepare_s / events:.2f}; replay / read only: {replay_rate * read_s / events:.2f}")
    if args.profile:
        print("\ncProfile of a second replay (top 15 by own time):")
        pstats.Stats(profiler).sort_stats("tottime").print_stats(15)


if __name__ == "__main__":
    main()
