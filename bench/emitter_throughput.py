"""What one emitting process delivers, and what its background flusher costs the host.

    python bench/emitter_throughput.py [--seconds 5] [--rate 1000000]

Starts a private embedded server and records operations from one thread at
`--rate` events/s (paced in chunks of 1,000) for `--seconds`, then waits for
delivery. The rate is sustained when nothing is dropped. Prints the delivered
rate (target >= 1,000,000 events/s sustained), the flusher thread's CPU per
event (target <= 0.3 us), and, as the peer measured in the same run, the rate
at which the server ingests the same payloads pre-encoded and pipelined by
plain redis-py. `--rate 0` records unpaced, as fast as the thread can.
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from pathlib import Path

import psutil
import redis

from emitters import Emitter, EmitterConfig
from processors.embedded import EmbeddedServer, ServerSettings
from schemas.codec import PAYLOAD_FIELD


def thread_cpu_s(name_prefix: str) -> float:
    """CPU seconds of this process's threads whose name starts with `name_prefix`."""
    ids = {t.native_id for t in threading.enumerate() if t.name.startswith(name_prefix)}
    return sum(t.user_time + t.system_time for t in psutil.Process().threads() if t.id in ids)


def raw_ingest_rate(client: redis.Redis, payloads: list[bytes], events_per_payload: float, stream: str) -> float:
    """Events/s the server accepts when the client does nothing but XADD ready-made batches."""
    start = time.perf_counter()
    for offset in range(0, len(payloads), 64):
        pipe = client.pipeline(transaction=False)
        for payload in payloads[offset : offset + 64]:
            pipe.xadd(stream, {PAYLOAD_FIELD: payload}, maxlen=100_000, approximate=True)
        pipe.execute()
    return len(payloads) * events_per_payload / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rate", type=float, default=1_000_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as data_dir, EmbeddedServer(ServerSettings(data_dir=Path(data_dir), appendonly=False)) as server:
        em = Emitter("bench", redis_url=server.url, config=EmitterConfig(buffer_max_events=1_000_000))
        cpu_before = thread_cpu_s("pipepulse-flusher")
        start = time.perf_counter()
        recorded = 0
        record = em.record
        while (now := time.perf_counter()) - start < args.seconds:
            if args.rate and recorded > (now - start) * args.rate:
                time.sleep(recorded / args.rate - (now - start))  # pacing the load, not synchronisation
                continue
            for _ in range(1_000):
                record("resolve_breadcrumb", duration_ms=5.2, ok=True, cache_hits=1, cache_misses=0)
            recorded += 1_000
        em.flush(60)
        elapsed = time.perf_counter() - start
        flusher_cpu_s = thread_cpu_s("pipepulse-flusher") - cpu_before
        stats = em.stats()
        client = redis.Redis.from_url(server.url)
        sample = [fields[PAYLOAD_FIELD] for _, fields in client.xrange("pipepulse:events", count=2_000)]
        per_payload = stats.delivered_total / max(stats.batches_total, 1)
        peer = raw_ingest_rate(client, sample, per_payload, "bench:raw")
        em.close()
        client.close()
    rate = stats.delivered_total / elapsed
    print(f"recorded {recorded} events in {args.seconds:.1f} s; delivered {stats.delivered_total}, dropped {stats.dropped_total}")
    verdict = "sustained" if stats.dropped_total == 0 else "NOT sustained (events dropped)"
    print(f"delivered rate:                {rate:12,.0f} events/s  {verdict} (target >= 1,000,000)")
    print(f"flusher CPU per event:         {flusher_cpu_s / max(stats.delivered_total, 1) * 1e6:12.3f} us  (target <= 0.3)")
    print(f"server raw ingest (peer):      {peer:12,.0f} events/s  (same batches, pre-encoded, pipelined)")
    print(f"ratio delivered / raw ingest:  {rate / peer:12.2f}")


if __name__ == "__main__":
    main()
