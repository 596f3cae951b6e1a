"""Dashboard API latency under concurrent polling with 1,000 active series, and the memory of the dashboard process.

    python bench/dashboard_latency.py [--clients 50] [--seconds 30] [--components 50] [--operations 20]

On a fresh embedded server, the monitor with the shipped rules folds, in this
process, a generated log of `--event-seconds` (60) of event time: every second
each of `--components` components sends one batch holding `--events-per-series`
events of each of its `--operations` operations, then a tick; components x
operations operation series (1,000 by default) plus one series per component.
Its outputs (snapshots, latest-value tables, derived streams) are written with
`write_outputs`, as a replay writes them. Then `pipepulse web` starts as users
run it (`python -m processors web`, in its own process) and `--clients` asyncio
clients in this process, each with its own aiohttp session (one kept-alive
connection, like a browser tab), poll an endpoint once a second for
`--seconds`: first `/api/overview` (what the dashboard polls), then `/metrics`
(what a Prometheus scrape reads). The clients' polls are spread evenly over
each second (independent dashboards), or with `--aligned` all fire at the same
instant (the worst case). A poll whose response comes later than its next turn
skips the turns it missed rather than piling up. Every request's latency is
recorded, from sending it to having read the whole body.

Prints per endpoint the requests, requests/s, errors (non-200 or failed), skipped
turns, p50/p99/max latency, the cores the web process, the server, the clients
and anything else on the machine used, and the web process's RSS (sampled every
0.1 s; max per phase and idle before the load). As the peer measured in the
same run: the same data read directly with redis-py, `processors.api.overview`
timed in a loop by a single client, with the ratio of the HTTP p99 to it.
Target: `/api/overview` p99 under 50 polling clients < 100 ms. The clients share
the machine with the server: on 2 cores their own CPU is part of the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import psutil
import redis

from schemas.checks import Limits
from schemas.names import PIPELINE_FIELD, Names

from emitters.testing import wait_until
from processors import api
from processors.embedded import EmbeddedServer, ServerSettings, free_port
from processors.intake import prepare
from processors.ledger import Ledger
from processors.monitor import MonitorProcessor, MonitorSettings
from processors.rules import load_rules
from processors.runtime import write_outputs
from workload import Operation, one_second, operation_calls

NAMES = Names("pipepulse")  # the default prefix: what `pipepulse web` reads without PIPEPULSE_PREFIX
TOKEN = "bench-token"
TARGET_P99_MS = 100.0
ENDPOINTS = ("/api/overview", "/metrics")
SAMPLE_S = 0.1
REQUEST_TIMEOUT_S = 10.0


@dataclass(slots=True)
class Phase:
    path: str
    latencies_ms: list[float] = field(default_factory=list)
    failures: Counter[str] = field(default_factory=Counter)
    skipped: int = 0  # turns a client missed because its previous response came too late
    body_bytes: int = 0
    rss_mb: list[float] = field(default_factory=list)
    wall_s: float = 0.0
    web_cpu_s: float = 0.0
    server_cpu_s: float = 0.0
    own_cpu_s: float = 0.0
    host_busy_s: float = 0.0


def cpu_s(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


def host_busy_s() -> float:
    times = psutil.cpu_times()
    return float(sum(times) - times.idle - getattr(times, "iowait", 0.0))


def seed(client: redis.Redis, components: int, operations: int, events_per_series: int, seconds: int) -> int:
    """Fold the log second by second with the monitor and write its outputs; returns how many outputs were written."""
    ops = [Operation(f"op_{i:02d}", 0.05 * 1.4**i, 0.01, 0.8 if i % 4 == 0 else None) for i in range(operations)]
    calls = [operation_calls(operations * events_per_series * 16, seed=c, operations=ops) for c in range(components)]
    monitor, ledger, limits = MonitorProcessor(MonitorSettings(rules=load_rules())), Ledger(), Limits()
    written = 0
    for second in range(seconds):
        outputs = monitor.apply(prepare(one_second(second, calls, operations, events_per_series), ledger, limits).items)
        monitor.take_changes()  # as the runtime's commit does, so changes do not pile up
        write_outputs(client, NAMES, outputs)
        written += len(outputs)
    return written


def operation_series(overview: dict[str, Any]) -> int:
    """Operation series in the overview's statistics: each component's field holds its window's view, with its operations."""
    return sum(len(view.get("operations", {})) for name, views in overview["stats"].items() if name != PIPELINE_FIELD for view in views.values())


def direct_reads(client: redis.Redis, reads: int) -> np.ndarray:
    """The peer: milliseconds per `api.overview` read over redis-py, one client, back to back."""
    times = []
    for _ in range(reads):
        started = time.perf_counter()
        api.overview(client, NAMES)
        times.append(time.perf_counter() - started)
    return np.array(times) * 1000


def answers(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/overview", timeout=5) as response:
            return bool(response.status == 200)
    except OSError:
        return False


async def poll(session: aiohttp.ClientSession, url: str, host: str, phase: Phase, offset_s: float, start: float, seconds: float) -> None:
    """One client: a request at start + offset + k seconds for k = 0, 1, ... while within `seconds`."""
    turn = 0
    while (due := start + offset_s + turn) - start < seconds:
        if (wait := due - time.perf_counter()) > 0:
            await asyncio.sleep(wait)  # pacing the polls
        sent = time.perf_counter()
        try:
            async with session.get(url, headers={"Host": host}) as response:
                body = await response.read()
            elapsed_ms = (time.perf_counter() - sent) * 1000
            if response.status == 200:
                phase.latencies_ms.append(elapsed_ms)
                phase.body_bytes = len(body)
            else:
                phase.failures[f"HTTP {response.status}"] += 1
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            phase.failures[type(exc).__name__] += 1
        following = max(turn + 1, math.floor(time.perf_counter() - start - offset_s) + 1)
        phase.skipped += following - turn - 1
        turn = following


async def sample_rss(process: psutil.Process, phase: Phase, stop: asyncio.Event) -> None:
    while not stop.is_set():
        phase.rss_mb.append(process.memory_info().rss / 2**20)
        try:
            await asyncio.wait_for(stop.wait(), SAMPLE_S)
        except asyncio.TimeoutError:
            pass


async def run_phase(path: str, port: int, clients: int, seconds: float, aligned: bool, web: psutil.Process, server: psutil.Process) -> Phase:
    phase = Phase(path)
    host = f"127.0.0.1:{port}"
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)
    sessions = [aiohttp.ClientSession(timeout=timeout, connector=aiohttp.TCPConnector(limit=1)) for _ in range(clients)]
    stop = asyncio.Event()
    sampler = asyncio.create_task(sample_rss(web, phase, stop))
    web_cpu, server_cpu, own_cpu, busy = cpu_s(web), cpu_s(server), time.process_time(), host_busy_s()
    start = time.perf_counter()
    try:
        offsets = [0.0 if aligned else i / clients for i in range(clients)]
        await asyncio.gather(*(poll(session, f"http://{host}{path}", host, phase, offset, start, seconds) for session, offset in zip(sessions, offsets)))
    finally:
        phase.wall_s = time.perf_counter() - start
        phase.web_cpu_s, phase.server_cpu_s = cpu_s(web) - web_cpu, cpu_s(server) - server_cpu
        phase.own_cpu_s, phase.host_busy_s = time.process_time() - own_cpu, host_busy_s() - busy
        stop.set()
        await sampler
        for session in sessions:
            await session.close()
    return phase


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=50, help="concurrent polling clients")
    parser.add_argument("--seconds", type=float, default=30.0, help="polling time per endpoint")
    parser.add_argument("--components", type=int, default=50)
    parser.add_argument("--operations", type=int, default=20, help="operations per component")
    parser.add_argument("--events-per-series", type=int, default=5, help="events per operation series per simulated second")
    parser.add_argument("--event-seconds", type=int, default=60, help="simulated event time the monitor folds before the polling")
    parser.add_argument("--direct-reads", type=int, default=300, help="reads of the peer (api.overview over redis-py)")
    parser.add_argument("--aligned", action="store_true", help="all clients poll at the same instant each second (default: spread over the second)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp, EmbeddedServer(ServerSettings(data_dir=Path(tmp) / "server", appendonly=False)) as server:
        client = redis.Redis.from_url(server.url, socket_timeout=30)
        server_process = psutil.Process(int(client.info("server")["process_id"]))
        started = time.perf_counter()
        outputs = seed(client, args.components, args.operations, args.events_per_series, args.event_seconds)
        seeded_s = time.perf_counter() - started
        overview = api.overview(client, NAMES)
        series = operation_series(overview)
        peer = direct_reads(client, args.direct_reads)

        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("PIPEPULSE_")}
        env |= {"PIPEPULSE_REDIS_URL": server.url, "PIPEPULSE_WEB_TOKEN": TOKEN, "PIPEPULSE_STATE_DIR": str(Path(tmp) / "state")}
        log_path = Path(tmp) / "web.log"
        with open(log_path, "w") as log:
            web = subprocess.Popen([sys.executable, "-m", "processors", "web", "--port", str(port)], env=env, stdout=log, stderr=subprocess.STDOUT)
        try:

            def up() -> bool:
                if web.poll() is not None:
                    raise RuntimeError(f"pipepulse web exited with {web.returncode}:\n{log_path.read_text()}")
                return answers(port)

            wait_until(up, timeout_s=60, what="pipepulse web to answer", interval_s=0.2)
            web_process = psutil.Process(web.pid)
            idle_rss_mb = web_process.memory_info().rss / 2**20
            phases = [asyncio.run(run_phase(path, port, args.clients, args.seconds, args.aligned, web_process, server_process)) for path in ENDPOINTS]
        finally:
            web.terminate()
            web.wait(timeout=30)
        client.close()

    print(f"\n== pipepulse web, {args.clients} clients polling once a second for {args.seconds:g} s per endpoint ({'aligned' if args.aligned else 'spread over the second'}); {psutil.cpu_count()} cores")
    print(f"snapshots: {args.components} components x {args.operations} operations = {args.components * args.operations:,} operation series (+{args.components} component series),")
    print(f"           {args.event_seconds} s of event time folded by the monitor in {seeded_s:.1f} s, {outputs:,} outputs written; the overview shows {series:,} operation series")
    print(f"\n{'endpoint':<15} {'requests':>8} {'req/s':>7} {'errors':>6} {'skipped':>7} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'body KB':>8} {'max RSS MB':>10}")
    for phase in phases:
        latencies = np.array(phase.latencies_ms) if phase.latencies_ms else np.array([math.nan])
        print(
            f"{phase.path:<15} {len(phase.latencies_ms):8,} {len(phase.latencies_ms) / phase.wall_s:7.1f} {sum(phase.failures.values()):6} {phase.skipped:7}"
            f" {np.percentile(latencies, 50):8.1f} {np.percentile(latencies, 99):8.1f} {latencies.max():8.1f} {phase.body_bytes / 1024:8.1f} {max(phase.rss_mb):10.1f}"
        )
    for phase in phases:
        if phase.failures:
            print(f"{phase.path} errors: " + ", ".join(f"{kind} x{n}" for kind, n in phase.failures.most_common()))
    print("\ncores used while polling:")
    for phase in phases:
        web_cores, server_cores, own_cores = (s / phase.wall_s for s in (phase.web_cpu_s, phase.server_cpu_s, phase.own_cpu_s))
        other = max(0.0, phase.host_busy_s / phase.wall_s - web_cores - server_cores - own_cores)
        print(f"{phase.path:<15} web {web_cores:.2f}, server {server_cores:.2f}, clients {own_cores:.2f}, other {other:.2f}  (other: not this benchmark's; above ~0.1 the figures are perturbed)")
    print(f"\nweb process RSS: idle before the load {idle_rss_mb:.1f} MB, max while polling {max(max(p.rss_mb) for p in phases):.1f} MB")
    peer_p99 = float(np.percentile(peer, 99))
    print(f"direct read (peer): api.overview over redis-py, 1 client, {len(peer)} reads: p50 {np.percentile(peer, 50):.1f} ms, p99 {peer_p99:.1f} ms, max {peer.max():.1f} ms")
    for phase in phases:
        p99 = float(np.percentile(phase.latencies_ms, 99)) if phase.latencies_ms else math.nan
        print(f"ratio {phase.path} HTTP p99 / direct-read p99: {p99 / peer_p99:.2f}")
    overview_phase = phases[0]
    p99 = float(np.percentile(overview_phase.latencies_ms, 99)) if overview_phase.latencies_ms else math.nan
    verdict = "met" if p99 < TARGET_P99_MS and not overview_phase.failures else "NOT met"
    print(f"\ntarget: /api/overview p99 under {args.clients} clients < {TARGET_P99_MS:.0f} ms: {verdict} ({p99:.1f} ms{', with errors' if overview_phase.failures else ''})")
    if args.clients != 50 or series < 1_000:
        print(f"(the target is stated for 50 clients and 1,000 series; this run had {args.clients} clients and {series:,} series)")


if __name__ == "__main__":
    main()
