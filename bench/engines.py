"""The same workload through the Redis runtime and the Faust engine (1 and 2 workers), side by side on this machine.

    python bench/engines.py [--events 400000] [--rate 20000] [--seconds 10] [--partitions 4] [--logs DIR]

One embedded server, and for the Faust engine one Kafka-protocol broker (the
`noida-db` binary the tests use), on loopback; every engine under a prefix of
its own. The engines:

- redis: the Redis runtime as `pipepulse run` folds the log, one `Worker` with
  the `MonitorProcessor` (default rules) in a process of its own, reading the
  events stream;
- faust-1, faust-2: `pipepulse worker --no-ticks` processes (1, then 2) on an
  events topic of `--partitions` partitions. Stage 1 (forward) spreads the
  intake over the workers by partition; stage 2 (the monitor) reads the
  one-partition `ordered` topic, so it runs on one worker whatever their count:
  a second worker can take stage 1 off the folding worker, not split the fold.

The workload is the same log for all: `--components` components taking turns,
batches of `--batch` operation events (bench/workload.py) with event times
advancing at `--rate` events per simulated second, and a tick at every
simulated second (Redis: a TICK entry in the events stream; Faust: a tick to
every partition, as the engine's leader sends them). The bench sends the
ticks itself, so the log, and the work, is the same for every engine.

Each engine: warm-up (one simulated second, folded), then
- throughput: its processes are stopped (SIGSTOP), a backlog of `--events`
  events is written, they are resumed (SIGCONT), and the clock runs until the
  engine's committed `events_total` (the ledger counter written with every
  commit) covers the backlog: events/s. CPU per event is the user + system time
  of the engine's processes (the Worker's process; the Faust workers) over the
  same interval divided by the events; "servers" is the same for the Redis
  server (and for Faust the broker too), which the engines also make work;
- latency: `--rate` events/s for `--seconds` s, paced in batches, a tick at
  every second of wall time (tick time = event time). A batch's latency is
  from handing it to the client (XADD, producer.send) to the first poll (every
  2 ms) of `events_total` that covers it. The Faust engine releases a batch
  only when the tick after it has passed every partition (its deterministic
  order), so its latency includes up to one tick interval (1 s) by design;
  "tick->" is the same measured from the send of that tick, the engine's own
  delay.

Prints a table, each Faust engine's ratios to the Redis runtime measured in
the same run, and "other cores": CPU that anything else on the machine used
meanwhile (above ~0.1 the figures are perturbed). `--logs DIR` keeps the Faust
workers' logs.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import multiprocessing
import os
import shlex
import signal
import subprocess
import sys
import tempfile
import threading
import time
from bisect import bisect_left
from dataclasses import dataclass
from multiprocessing.synchronize import Event as ProcessEvent
from pathlib import Path
from typing import Callable, Protocol, Sequence

import numpy as np
import psutil
import redis
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient

from emitters.testing import wait_until
from processors.embedded import EmbeddedServer, ServerSettings, die_with_parent
from processors.monitor import MonitorProcessor, MonitorSettings
from processors.rules import load_rules
from processors.runtime import Worker, applied_state, committed_counters, tune_gc
from processors.scaleout.ordering import KIND_HEADER, TICK_KIND, tick_value
from schemas.codec import PAYLOAD_FIELD, TICK_FIELD, pack
from schemas.names import Names
from workload import T0, Call, batch_payload, operation_calls, operation_rows

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.append(str(REPO))  # `python bench/engines.py` puts bench/ on the path, not the root that holds tests/
from tests.kafka_broker import KafkaBroker, binary  # noqa: E402

CTX = multiprocessing.get_context("spawn")
POLL_S = 0.002  # the committed counters, during both phases
WARMUP_S = 1  # simulated seconds folded before anything is timed
TICK_EVERY_S = 1.0


# -- the workload ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Record:
    """One entry of the log: a batch of a component, or a tick (component None)."""

    due_s: float  # when the paced phase sends it, from the phase's start
    component: str | None
    payload: bytes  # the batch envelope; b"" for a tick
    events: int
    tick_s: float = 0.0


class Log:
    """The one log every engine gets: components taking turns, event time advancing at `rate` events/s, a tick each simulated second."""

    def __init__(self, components: int, batch: int, rate: float) -> None:
        self.components, self.batch, self.rate = components, batch, rate
        self.pools: list[list[Call]] = [operation_calls(20 * batch, seed=c) for c in range(components)]
        self.seqs = [0] * components
        self.batches = 0
        self.time_s = T0  # event time where the next segment starts (the last tick's)

    def segment(self, events: int) -> list[Record]:
        """`events` (rounded down to batches) from the current event time on, ending with the tick that closes its last second."""
        start, per_batch_s = self.time_s, self.batch / self.rate
        records: list[Record] = []
        next_tick = 1
        count = events // self.batch
        for j in range(1, count + 1):
            due_s = j * per_batch_s
            while next_tick < due_s:  # a tick precedes every batch sent after its second
                records.append(Record(float(next_tick), None, b"", 0, start + next_tick))
                next_tick += 1
            c = self.batches % self.components
            self.batches += 1
            seq, pool = self.seqs[c], self.pools[c]
            self.seqs[c] += 1
            floor_s = start + math.ceil(due_s) - 1  # the last tick before it: no event of it is late
            timestamps = [max(floor_s, start + due_s - (self.batch - i) / self.rate) for i in range(self.batch)]
            offset = (seq * self.batch) % (len(pool) - self.batch)
            rows = operation_rows(pool[offset : offset + self.batch], timestamps)
            component = f"component-{c:02d}"
            records.append(Record(due_s, component, batch_payload(rows, producer_id=f"bench:{c}", seq=seq, component=component), self.batch))
        last = math.ceil(count * per_batch_s)
        for tick in range(next_tick, last + 1):
            records.append(Record(float(tick), None, b"", 0, start + tick))
        self.time_s = start + last
        return records


def events_in(records: Sequence[Record]) -> int:
    return sum(r.events for r in records)


# -- polling the committed counters ---------------------------------------------


class Poller(threading.Thread):
    """Reads an engine's committed events_total every POLL_S; keeps (time after the read, value) at each change."""

    def __init__(self, read: Callable[[], int]) -> None:
        super().__init__(name="poller", daemon=True)
        self._read = read
        self.samples: list[tuple[float, int]] = []
        self.halt = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            while not self.halt.is_set():
                value = self._read()
                now = time.perf_counter()
                if not self.samples or value != self.samples[-1][1]:
                    self.samples.append((now, value))
                self.halt.wait(POLL_S)
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            self.error = exc

    def wait_for(self, target: int, timeout_s: float) -> float | None:
        """The time of the first sample at or past `target`, or None at the deadline."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.error is not None:
                raise RuntimeError(f"polling the counters failed: {self.error!r}")
            if self.samples and self.samples[-1][1] >= target:
                return next(t for t, v in self.samples if v >= target)
            time.sleep(0.01)
        return None

    def stop(self) -> None:
        self.halt.set()
        self.join(5)


# -- the engines ---------------------------------------------------------------


class Engine(Protocol):
    label: str
    names: Names
    waits_for_ticks: bool  # releases a batch only with the tick after it

    def start(self) -> None: ...

    def settled(self) -> None: ...

    def processes(self) -> list[psutil.Process]: ...

    def servers(self) -> list[psutil.Process]: ...

    def counters(self, client: redis.Redis) -> dict[str, int]: ...

    def send(self, records: Sequence[Record], paced: bool) -> list[float]: ...

    def stop(self) -> None: ...

    def log_tail(self) -> str: ...


def run_redis_worker(url: str, prefix: str, stop: ProcessEvent) -> None:
    """The Redis runtime's monitor as `pipepulse run` runs it (tune_gc, one Worker), without its Ticker: the log carries the ticks."""
    local = threading.Event()

    def bridge() -> None:  # the Worker waits on a threading.Event; the parent sets a process-shared one
        stop.wait()
        local.set()

    threading.Thread(target=bridge, daemon=True).start()
    tune_gc()
    Worker(url=url, names=Names(prefix), processor=MonitorProcessor(MonitorSettings(rules=load_rules()))).run(local)


class RedisEngine:
    def __init__(self, server: EmbeddedServer, server_process: psutil.Process, prefix: str) -> None:
        self.label, self.names, self.url = "redis", Names(prefix), server.url
        self.waits_for_ticks = False
        self._server_process = server_process
        self._stop = CTX.Event()
        self._process: multiprocessing.process.BaseProcess | None = None

    def start(self) -> None:
        self._process = CTX.Process(target=run_redis_worker, args=(self.url, self.names.prefix, self._stop), name="redis-worker", daemon=True)
        self._process.start()
        group = self.names.group("monitor")
        with redis.Redis.from_url(self.url) as client:
            wait_until(lambda: client.exists(self.names.events) and any(g["name"].decode() == group for g in client.xinfo_groups(self.names.events)), 60, "the Worker's consumer group")

    def settled(self) -> None:
        pass

    def processes(self) -> list[psutil.Process]:
        assert self._process is not None and self._process.pid is not None
        return [psutil.Process(self._process.pid)]

    def servers(self) -> list[psutil.Process]:
        return [self._server_process]

    def counters(self, client: redis.Redis) -> dict[str, int]:
        return committed_counters(client, self.names, "monitor")

    def send(self, records: Sequence[Record], paced: bool) -> list[float]:
        sent: list[float] = []
        with redis.Redis.from_url(self.url, socket_timeout=30) as client:
            if not paced:
                pipe = client.pipeline(transaction=False)
                for r in records:
                    pipe.xadd(self.names.events, _fields(r))
                    if len(pipe) >= 64:
                        pipe.execute()
                pipe.execute()
                return sent
            t0 = time.perf_counter()
            for r in records:
                delay = t0 + r.due_s - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)  # pacing the load
                sent.append(time.perf_counter())
                client.xadd(self.names.events, _fields(r))
        return sent

    def stop(self) -> None:
        self._stop.set()
        if self._process is not None:
            self._process.join(10)
            if self._process.is_alive():
                self._process.terminate()
                self._process.join(10)

    def log_tail(self) -> str:
        return ""


def _fields(r: Record) -> dict[bytes, bytes]:
    return {TICK_FIELD: pack(r.tick_s)} if r.component is None else {PAYLOAD_FIELD: r.payload}


class FaustEngine:
    def __init__(self, broker: KafkaBroker, broker_process: psutil.Process, server: EmbeddedServer, server_process: psutil.Process, prefix: str, partitions: int, workers: int, logs: Path) -> None:
        self.label, self.names = f"faust-{workers}", Names(prefix)
        self.waits_for_ticks = True
        self.broker, self.server, self.partitions, self.workers, self.logs = broker, server, partitions, workers, logs
        self._servers = [server_process, broker_process]
        self._procs: list[subprocess.Popen[bytes]] = []

    def start(self) -> None:
        self.logs.mkdir(parents=True, exist_ok=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith("PIPEPULSE_")} | {
            "PIPEPULSE_KAFKA_URL": self.broker.url,
            "PIPEPULSE_REDIS_URL": self.server.url,
            "PIPEPULSE_PREFIX": self.names.prefix,
            "PIPEPULSE_KAFKA_PARTITIONS": str(self.partitions),
            "PIPEPULSE_STATE_DIR": str(self.logs / "state"),
        }
        for i in range(self.workers):
            with open(self.logs / f"w{i + 1}.log", "ab") as out:
                command = [sys.executable, "-m", "processors", "worker", "--id", f"w{i + 1}", "--no-ticks", "--loglevel", "info"]
                self._procs.append(subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, preexec_fn=die_with_parent))
        topic = self.names.topic("events")
        try:
            wait_until(lambda: self._alive() and self.broker.partitions(topic) == self.partitions, 90, f"the workers to create {topic}", 0.2)
        except TimeoutError as exc:
            raise RuntimeError(f"{exc}\n{self.log_tail()}") from exc
        self.settled()

    def settled(self) -> None:
        """Every worker in the consumer group and no rebalance under way: none starts mid-measurement."""
        group = f"{self.names.prefix}-monitor"  # the Faust app's id
        try:
            wait_until(lambda: self._alive() and asyncio.run(_group(self.broker.bootstrap, group)) == ("Stable", self.workers), 90, f"group {group} to be stable with {self.workers} members", 0.2)
        except TimeoutError as exc:
            raise RuntimeError(f"{exc}; last seen {asyncio.run(_group(self.broker.bootstrap, group))}\n{self.log_tail()}") from exc

    def _alive(self) -> bool:
        dead = [p for p in self._procs if p.poll() is not None]
        if dead:
            raise RuntimeError(f"a Faust worker exited with {dead[0].returncode}\n{self.log_tail()}")
        return True

    def processes(self) -> list[psutil.Process]:
        return [psutil.Process(p.pid) for p in self._procs]

    def servers(self) -> list[psutil.Process]:
        return self._servers

    def counters(self, client: redis.Redis) -> dict[str, int]:
        return applied_state(client, self.names, "faust")[1]

    def send(self, records: Sequence[Record], paced: bool) -> list[float]:
        return asyncio.run(_send(self.broker.bootstrap, self.names.topic("events"), records, self.partitions, paced))

    def stop(self) -> None:
        for p in self._procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self._procs:
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()

    def log_tail(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}" for p in sorted(self.logs.glob("*.log")))


async def _group(bootstrap: str, group: str) -> tuple[str, int]:
    """(state, members) of a consumer group."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        described = (await admin.describe_consumer_groups([group]))[0].groups[0]  # (error_code, group, state, protocol_type, protocol, members)
        return str(described[2]), len(described[5])
    finally:
        await admin.close()


async def _send(bootstrap: str, topic: str, records: Sequence[Record], partitions: int, paced: bool) -> list[float]:
    """Batches keyed by component, ticks to every partition (as the leader sends them); with `paced`, each at its due time."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True, linger_ms=0)
    await producer.start()
    sent: list[float] = []
    acks: list[asyncio.Future[object]] = []
    try:
        t0 = time.perf_counter()
        for r in records:
            if paced:
                delay = t0 + r.due_s - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)  # pacing the load; the producer sends meanwhile
                sent.append(time.perf_counter())
            if r.component is None:
                value = tick_value(r.tick_s, partitions)
                for partition in range(partitions):
                    acks.append(await producer.send(topic, value, partition=partition, headers=[(KIND_HEADER, TICK_KIND)]))
            else:
                acks.append(await producer.send(topic, r.payload, key=r.component.encode()))
        await asyncio.gather(*acks)
    finally:
        await producer.stop()
    return sent


# -- one engine, both phases ------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Result:
    label: str
    backlog: int
    fold_s: float | None  # None: not folded within the timeout
    cpu_us: float  # the engine's processes, per event of the backlog
    servers_us: float
    latencies_ms: np.ndarray
    after_tick_ms: np.ndarray  # faust: from the send of the tick that releases the batch (empty for redis)
    batches: int  # in the paced phase
    drain_s: float | None  # from the last send until every paced batch was folded
    other_cores: float  # CPU that nothing of this run used, on average over both phases: above ~0.1 the figures are perturbed
    problems: str  # dead letters, missing batches


def batch_latencies(paced: Sequence[Record], sent: Sequence[float], samples: Sequence[tuple[float, int]], base: int) -> tuple[np.ndarray, np.ndarray]:
    """Per batch (ms): from its send to the first sample whose events_total covers it, and from the send of the
    first tick after it (the one that releases it in the Faust engine) to that sample; batches never seen are left out."""
    times, values = [t for t, _ in samples], [v for _, v in samples]
    next_tick = math.nan
    tick_after: list[float] = []
    for r, at in zip(reversed(paced), reversed(sent)):
        if r.component is None:
            next_tick = at
        else:
            tick_after.append(next_tick)
    tick_after.reverse()
    latencies: list[float] = []
    after_tick: list[float] = []
    covered = base
    for r, at, tick_at in zip((r for r in paced if r.component is not None), (at for r, at in zip(paced, sent) if r.component is not None), tick_after):
        covered += r.events
        i = bisect_left(values, covered)  # the counter only grows
        if i < len(values):
            latencies.append((times[i] - at) * 1000)
            if not math.isnan(tick_at):
                after_tick.append((times[i] - tick_at) * 1000)
    return np.array(latencies), np.array(after_tick)


def cpu_s(processes: Sequence[psutil.Process]) -> float:
    return sum(float(t.user + t.system) for t in (p.cpu_times() for p in processes))


def host_busy_s() -> float:
    """Every process on the machine, ours included."""
    times = psutil.cpu_times()
    return float(sum(times) - times.idle - getattr(times, "iowait", 0.0))


def measure(engine: Engine, url: str, warmup: Sequence[Record], backlog: Sequence[Record], paced: Sequence[Record], timeout_s: float) -> Result:
    client = redis.Redis.from_url(url, socket_timeout=30)
    poll_client = redis.Redis.from_url(url, socket_timeout=30)

    def events() -> int:
        return int(engine.counters(poll_client).get("events_total", 0))

    try:
        engine.start()
        engine.send(warmup, paced=False)
        warm = events_in(warmup)
        try:
            wait_until(lambda: events() >= warm, 120, f"{engine.label} to fold the warm-up", 0.05)
        except TimeoutError as exc:
            raise RuntimeError(f"{exc}\n{engine.log_tail()}") from exc
        engine.settled()

        # Throughput: the backlog written while the engine's processes are stopped, folded from their resumption.
        processes = engine.processes()
        for p in processes:
            p.suspend()
        engine.send(backlog, paced=False)
        target = warm + events_in(backlog)
        cpu_before, servers_before = cpu_s(processes), cpu_s(engine.servers())
        ours = [*processes, *engine.servers(), psutil.Process()]
        host_before, ours_before = host_busy_s(), cpu_s(ours)
        poller = Poller(events)
        poller.start()
        started = time.perf_counter()
        for p in processes:
            p.resume()
        done = poller.wait_for(target, timeout_s)
        cpu_after, servers_after = cpu_s(processes), cpu_s(engine.servers())
        poller.stop()
        folded = events() - warm
        if done is None:
            print(f"  {engine.label}: folded {folded:,} of {target - warm:,} backlog events within {timeout_s:g} s", flush=True)
            return Result(engine.label, target - warm, None, math.nan, math.nan, np.array([]), np.array([]), 0, None, math.nan, "timed out")

        # Latency: paced batches, each from its send to the first poll that shows it committed.
        poller = Poller(events)
        poller.start()
        sent = engine.send(paced, paced=True)
        last_sent = time.perf_counter()
        final = target + events_in(paced)
        drained = poller.wait_for(final, timeout_s)
        poller.stop()
        other_cores = max(0.0, (host_busy_s() - host_before) - (cpu_s(ours) - ours_before)) / (time.perf_counter() - started)
        latencies, after_tick = batch_latencies(paced, sent, poller.samples, target)
        counters = engine.counters(client)
        problems = ", ".join(f"{k} {counters.get(k, 0):,}" for k in ("dead_letters_total", "missing_batches_total") if counters.get(k, 0))
        if counters.get("events_total", 0) != final and drained is not None:
            problems += f" events_total {counters.get('events_total', 0):,} != {final:,}"
        return Result(
            engine.label,
            target - warm,
            done - started,
            (cpu_after - cpu_before) / (target - warm) * 1e6,
            (servers_after - servers_before) / (target - warm) * 1e6,
            latencies,
            after_tick if engine.waits_for_ticks else np.array([]),
            sum(1 for r in paced if r.events),
            None if drained is None else max(0.0, drained - last_sent),
            other_cores,
            problems,
        )
    finally:
        engine.stop()
        client.close()
        poll_client.close()


def run_one(engine: Engine, url: str, warmup: Sequence[Record], backlog: Sequence[Record], paced: Sequence[Record], timeout_s: float) -> Result:
    """`measure`, with a progress line; a failed engine is reported in the table, and the others still run."""
    print(f"running {engine.label} ...", flush=True)
    started = time.monotonic()
    try:
        result = measure(engine, url, warmup, backlog, paced, timeout_s)
    except Exception as exc:  # noqa: BLE001 - printed, and the run goes on to the next engine
        print(f"  {engine.label} FAILED: {exc}", flush=True)
        return Result(engine.label, events_in(backlog), None, math.nan, math.nan, np.array([]), np.array([]), 0, None, math.nan, f"failed: {type(exc).__name__}")
    print(f"  done in {time.monotonic() - started:.0f} s", flush=True)
    return result


# -- output -----------------------------------------------------------------------


def percentile(values: np.ndarray, q: float) -> float:
    return float(np.percentile(values, q)) if len(values) else math.nan


def ratio(a: float, b: float) -> float:
    return a / b if b and not math.isnan(b) else math.nan


def fmt(value: float, width: int, digits: int) -> str:
    return f"{'-':>{width}}" if math.isnan(value) else f"{value:{width}.{digits}f}"


def print_results(results: Sequence[Result]) -> None:
    print(
        f"\n{'engine':8} {'events/s':>9} {'fold s':>7} {'CPU us/ev':>9} {'servers us/ev':>13} {'p50 ms':>7} {'p99 ms':>7} {'max ms':>7}"
        f" {'tick->p50':>9} {'tick->p99':>9} {'folded':>9} {'drain s':>7} {'other cores':>11}"
    )
    for r in results:
        rate = r.backlog / r.fold_s if r.fold_s else math.nan
        lat, tick = r.latencies_ms, r.after_tick_ms
        print(
            f"{r.label:8} {fmt(rate, 9, 0) if math.isnan(rate) else f'{rate:9,.0f}'} {fmt(r.fold_s or math.nan, 7, 2)} {fmt(r.cpu_us, 9, 2)} {fmt(r.servers_us, 13, 2)}"
            f" {fmt(percentile(lat, 50), 7, 1)} {fmt(percentile(lat, 99), 7, 1)} {fmt(percentile(lat, 100), 7, 1)}"
            f" {fmt(percentile(tick, 50), 9, 1)} {fmt(percentile(tick, 99), 9, 1)} {len(lat):>4}/{r.batches:<4} {fmt(r.drain_s if r.drain_s is not None else math.nan, 7, 2)} {fmt(r.other_cores, 11, 2)}"
            + (f"  PROBLEM: {r.problems}" if r.problems else "")
        )
    base = results[0]
    base_rate = base.backlog / base.fold_s if base.fold_s else math.nan
    print(f"\nratios to {base.label} (same run): {'events/s':>9} {'CPU/ev':>7} {'servers/ev':>11} {'p50':>7} {'p99':>7}")
    for r in results[1:]:
        rate = r.backlog / r.fold_s if r.fold_s else math.nan
        p50 = ratio(percentile(r.latencies_ms, 50), percentile(base.latencies_ms, 50))
        p99 = ratio(percentile(r.latencies_ms, 99), percentile(base.latencies_ms, 99))
        print(f"{r.label + ' / ' + base.label:30} {fmt(ratio(rate, base_rate), 9, 2)} {fmt(ratio(r.cpu_us, base.cpu_us), 7, 2)} {fmt(ratio(r.servers_us, base.servers_us), 11, 2)} {fmt(p50, 7, 1)} {fmt(p99, 7, 1)}")
    perturbed = [r.label for r in results if r.other_cores > 0.1]
    if perturbed:
        print(f"PERTURBED: something else on the machine used more than 0.1 cores during {', '.join(perturbed)}; rerun on a quiet machine")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=400_000, help="the backlog each engine folds for the throughput")
    parser.add_argument("--rate", type=float, default=20_000, help="events/s of the paced phase, and events per simulated second throughout")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of the paced phase")
    parser.add_argument("--partitions", type=int, default=4, help="of the Faust engine's events topic")
    parser.add_argument("--components", type=int, default=8)
    parser.add_argument("--batch", type=int, default=500, help="events per batch")
    parser.add_argument("--timeout", type=float, default=300.0, help="longest wait for an engine to fold the backlog, or the paced phase")
    parser.add_argument("--logs", type=Path, default=None, help="keep the Faust workers' logs in this directory (default: a temporary one, deleted)")
    args = parser.parse_args()

    log = Log(args.components, args.batch, args.rate)
    warmup = log.segment(int(WARMUP_S * args.rate))
    backlog = log.segment(args.events)
    paced = log.segment(int(args.seconds * args.rate))
    ticks = sum(1 for r in backlog if r.component is None)
    print(f"command: python {' '.join(shlex.quote(a) for a in sys.argv)}")
    print(f"machine: {psutil.cpu_count()} cores, load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(
        f"workload: {args.components} components, batches of {args.batch} events, {args.rate:,.0f} events per simulated second, a tick each; "
        f"warm-up {events_in(warmup):,} events; backlog {events_in(backlog):,} events ({len(backlog) - ticks} batches, {ticks} ticks); "
        f"paced {events_in(paced):,} events at {args.rate:,.0f}/s over {args.seconds:g} s with a tick every {TICK_EVERY_S:g} s"
    )
    run_id = os.getpid()
    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="bench-engines-") as tmp, EmbeddedServer(ServerSettings(data_dir=Path(tmp) / "server", appendonly=False)) as server:
        with redis.Redis.from_url(server.url) as client:
            server_process = psutil.Process(int(client.info("server")["process_id"]))
        results.append(run_one(RedisEngine(server, server_process, f"bench-redis-{run_id}"), server.url, warmup, backlog, paced, args.timeout))
        broker = KafkaBroker(Path(tmp) / "kafka").start()
        try:
            broker_process = next(p for p in psutil.Process().children() if p.cmdline()[:1] == [str(binary())])
            for workers in (1, 2):
                engine = FaustEngine(broker, broker_process, server, server_process, f"bench-faust{workers}-{run_id}", args.partitions, workers, (args.logs or Path(tmp)) / f"faust{workers}-{run_id}")
                results.append(run_one(engine, server.url, warmup, backlog, paced, args.timeout))
        finally:
            broker.stop()

    print_results(results)
    print(
        "\nevents/s: the backlog folded from resuming the engine's processes (stopped while it was written, after a warm-up) to the first poll of the committed"
        "\n  events_total that covers it. CPU us/ev: user + system time of the engine's processes (redis: the Worker's process; faust: every worker) over"
        "\n  that interval, per event; servers us/ev: the Redis server's (faust: plus the Kafka broker's) over the same interval."
        f"\nlatency: per paced batch, from handing it to the client (XADD / producer.send) to the first poll ({POLL_S * 1000:g} ms) of events_total covering it;"
        f"\n  folded: batches seen committed; drain s: after the last send. The Faust engine releases a batch only once the tick after it has passed every"
        f"\n  partition, so its latency includes up to one tick interval ({TICK_EVERY_S:g} s here); the Redis runtime folds a batch when it reads it."
        "\n  tick->p50/p99 (faust): from the send of that tick to the commit, the engine's own delay without the wait for the tick."
        "\nboth engines run with tune_gc(), as `pipepulse run` and `pipepulse worker` do. In the Faust engine stage 1 spreads the intake"
        f"\n  over the workers ({args.partitions} partitions); the monitor stage is one partition, so a single worker folds whatever their count."
        f"\nall processes share this machine's {psutil.cpu_count()} cores with the servers and this bench; other cores: CPU used by anything else during"
        "\n  the engine's two phases (above ~0.1 the figures are perturbed). CPU times have a 10 ms resolution (servers us/ev 0: below it)."
    )


if __name__ == "__main__":
    main()
