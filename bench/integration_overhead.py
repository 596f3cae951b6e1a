"""The integration facade's cost to its host, against the plain Emitter it wraps, in the same run.

    python bench/integration_overhead.py [--calls 200000] [--repeats 5]

Prints ns per call of `PerformanceIntegrationService.track_operation()` and
`record_cache_operation()` against `Emitter.record()` (the peer: the same event
recorded directly), µs per `get_health_status()` / `get_dashboard_data()`
over snapshots of 50 components (reads answer from memory: no I/O on the
caller's thread), and the background refresh, against decoding the whole
windows the charts come from. Events go to an embedded server started here.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Callable

import redis

from schemas import views
from schemas.checks import Limits
from schemas.names import Names

from emitters import Emitter, EmitterConfig, PerformanceIntegrationService
from processors.embedded import EmbeddedServer, ServerSettings
from processors.intake import prepare
from processors.ledger import Ledger
from processors.monitor import MonitorProcessor, MonitorSettings
from processors.rules import load_rules
from processors.runtime import write_outputs
from emitter_overhead import ns_per_call
from workload import OPERATIONS, one_second, operation_calls

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=200_000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    config = EmitterConfig(buffer_max_events=args.calls * 4, flush_interval_s=3600.0)
    with tempfile.TemporaryDirectory() as data, EmbeddedServer(ServerSettings(data_dir=Path(data), appendonly=False)) as server:
        names = Names("bench")
        with redis.Redis.from_url(server.url) as client:  # snapshots of 50 busy components, as the monitor writes them
            calls = [operation_calls(len(OPERATIONS) * 20 * 16, seed=c) for c in range(50)]
            monitor, ledger = MonitorProcessor(MonitorSettings(rules=load_rules())), Ledger()
            for second in range(600):  # 60 closed windows: the charts' whole history
                write_outputs(client, names, monitor.apply(prepare(one_second(second, calls, len(OPERATIONS), 20), ledger, Limits()).items))
                monitor.take_changes()
        emitter = Emitter("breadcrumb_cache", server.url, config=config)
        service = PerformanceIntegrationService(redis_url=server.url, prefix=names.prefix, config=config, sample_system=False)
        service.initialize()
        service.start()
        service.register_component("breadcrumb_cache", depends_on=["tree_sitter_manager"])

        def peer() -> None:
            emitter.record("resolve_breadcrumb", 5.2, True, 1, 0)

        def facade() -> None:
            service.track_operation(component="breadcrumb_cache", operation_name="resolve_breadcrumb", duration_ms=5.2, success=True, cache_hits=1, cache_misses=0)

        def cache() -> None:
            service.record_cache_operation(component="breadcrumb_cache", operation_type="get", hit=True)

        peer_ns = ns_per_call(peer, args.calls, args.repeats, emitter.flush)
        facade_ns = ns_per_call(facade, args.calls, args.repeats, service.flush)
        cache_ns = ns_per_call(cache, args.calls, args.repeats, service.flush)
        service.refresh()
        reads: dict[str, list[float]] = {"get_health_status": [], "get_dashboard_data": []}
        for _ in range(200):
            for name, read in (("get_health_status", service.get_health_status), ("get_dashboard_data", service.get_dashboard_data)):
                start = time.perf_counter()
                read()
                reads[name].append((time.perf_counter() - start) * 1e6)
        with redis.Redis.from_url(server.url) as client:  # what the background thread reads: every second, and with the charts every 10 s
            refresh_ms = {history: min(_timed_ms(lambda: views.read(client, names, history)) for _ in range(5)) for history in (0, 60)}
            whole_ms = min(_timed_ms(lambda: [json.loads(f[b"json"]) for _, f in client.xrevrange(names.stream("stats"), count=60)]) for _ in range(5))
        print(f"Emitter.record() (peer):                  {peer_ns:7.0f} ns/call")
        print(f"service.track_operation():                {facade_ns:7.0f} ns/call  ratio {facade_ns / peer_ns:.2f}x")
        print(f"service.record_cache_operation():         {cache_ns:7.0f} ns/call  ratio {cache_ns / peer_ns:.2f}x")
        for name, samples in reads.items():
            print(f"service.{name}() (50 components): median {statistics.median(samples):6.1f} µs, max {max(samples):6.1f} µs (no I/O)")
        print(f"one background refresh (on the service's thread): {refresh_ms[0]:.1f} ms; with the charts (60 windows, 60 health snapshots) {refresh_ms[60]:.1f} ms")
        print(f"peer: decoding the 60 whole windows the charts are drawn from: {whole_ms:.1f} ms")
        service.stop()
        emitter.close()


def _timed_ms(work: Callable[[], object]) -> float:
    started = time.perf_counter()
    work()
    return (time.perf_counter() - started) * 1000


if __name__ == "__main__":
    main()
