"""The Faust engine against a real Kafka-protocol broker (noida-db) and the real embedded server, with real
`pipepulse worker` processes: the same outputs as the Redis runtime, and a SIGKILL that changes none of them.

The equivalence and failover tests send ticks themselves (`--no-ticks`), so that the log, and with it every
output, is fixed; `run --engine faust` runs on the leader's ticks.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence, TypeVar

import pytest
import redis
from aiokafka import AIOKafkaProducer

from emitters import PerformanceIntegrationService
from emitters.config import EmitterConfig
from schemas.codec import PAYLOAD_FIELD, TICK_FIELD, pack
from schemas.names import Names

from processors.embedded import EmbeddedServer, die_with_parent
from processors.monitor import MonitorProcessor, MonitorSettings
from processors.rules import load_rules
from processors.runtime import RuntimeSettings, Worker, applied_state, committed_counters
from processors.scaleout.ordering import KIND_HEADER, TICK_KIND, tick_value

from tests.conftest import wait_until
from tests.kafka_broker import KafkaBroker
from tests.processors.test_cli import PIPEPULSE, env_for
from tests.test_integration_service import check_against_workload, workload
from tests.scaleout_log import Record, canonical, derived, seeded_log

T = TypeVar("T")
SECONDS = 50
# A supervisor's restart delay, past Faust's heartbeat interval (3 s). noida-db lets a static group leader that
# rejoins sooner replace itself without a rebalance and recompute the assignment alone, which can leave partitions
# with no owner (real Kafka rebalances then, since KIP-814); later, the rejoin rebalances the group as Kafka does.
RESTART_DELAY_S = 3.5
LOG = seeded_log(seed=11, seconds=SECONDS)
EVENTS = sum(20 for key, _ in LOG if key is not None)


@dataclass
class Engine:
    broker: KafkaBroker
    server: EmbeddedServer
    prefix: str
    partitions: int
    logs: Path

    @property
    def names(self) -> Names:
        return Names(self.prefix)

    def worker(self, worker_id: str) -> subprocess.Popen[bytes]:
        env = {
            **os.environ,
            "PIPEPULSE_KAFKA_URL": self.broker.url,
            "PIPEPULSE_REDIS_URL": self.server.url,
            "PIPEPULSE_PREFIX": self.prefix,
            "PIPEPULSE_KAFKA_PARTITIONS": str(self.partitions),
            "PIPEPULSE_STATE_DIR": str(self.logs / "state"),
        }
        out = open(self.logs / f"{worker_id}.log", "ab")
        command = [sys.executable, "-m", "processors", "worker", "--id", worker_id, "--no-ticks", "--loglevel", "info"]
        proc = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT, preexec_fn=die_with_parent)
        out.close()
        return proc

    def wait_for_topic(self) -> None:
        """The workers create the events topic with its partitions; sending before would auto-create it with one."""
        wait_until(lambda: self.broker.partitions(self.names.topic("events")) == self.partitions, timeout_s=60, what="the worker to create the events topic")

    def send(self, log: Sequence[Record]) -> dict[str, int]:
        """The records as emitters and the leader send them; each component's partition, as the producer chose it."""
        return asyncio.run(_send(self.broker.bootstrap, self.names.topic("events"), log, self.partitions))

    def counters(self) -> dict[str, int]:
        with redis.Redis.from_url(self.server.url) as client:
            return applied_state(client, self.names, "faust")[1]

    def folding_pid(self) -> int | None:
        with redis.Redis.from_url(self.server.url) as client:
            raw = client.hget(self.names.runtime, "monitor")
        return None if raw is None else int(json.loads(raw)["pid"])

    def started(self, worker_id: str) -> int:
        """How many times the worker has come up (its log is appended to across restarts)."""
        return (self.logs / f"{worker_id}.log").read_text().count("[^Worker]: Ready")

    def wait(self, condition: Callable[[], T], what: str) -> T:
        """wait_until with the workers' logs as they are at the deadline, not as they were at the call."""
        try:
            return wait_until(condition, timeout_s=120, what=what)
        except TimeoutError as exc:
            tails = "\n".join(f"--- {p.name}\n{p.read_text()[-6000:]}" for p in sorted(self.logs.glob("*.log")))
            raise TimeoutError(f"{exc}\n{tails}") from exc


async def _send(bootstrap: str, topic: str, log: Sequence[Record], partitions: int) -> dict[str, int]:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True)
    await producer.start()
    partition_of: dict[str, int] = {}
    try:
        for key, value in log:
            if key is None:
                for partition in range(partitions):
                    await producer.send_and_wait(topic, tick_value(value, partitions), partition=partition, headers=[(KIND_HEADER, TICK_KIND)])  # type: ignore[arg-type]
            else:
                partition_of[key] = (await producer.send_and_wait(topic, value, key=key.encode())).partition  # type: ignore[arg-type]
    finally:
        await producer.stop()
    return partition_of


def redis_runtime(url: str, client: redis.Redis, names: Names, log: Sequence[Record]) -> dict[str, Any]:
    """The same log through the Redis runtime: its events stream, its Worker, the same monitor."""
    for key, value in log:
        client.xadd(names.events, {TICK_FIELD: pack(value)} if key is None else {PAYLOAD_FIELD: value})  # type: ignore[dict-item]
    stop = threading.Event()
    worker = Worker(url=url, names=names, processor=MonitorProcessor(MonitorSettings(rules=load_rules(None))), settings=RuntimeSettings())
    thread = threading.Thread(target=worker.run, args=(stop,))
    thread.start()
    try:
        wait_until(lambda: committed_counters(client, names, "monitor").get("entries_total") == len(log), timeout_s=60, what="the Redis runtime to fold the log")
    finally:
        stop.set()
        thread.join()
    return derived(client, names)


@pytest.fixture
def engine(kafka_broker: KafkaBroker, real_server: EmbeddedServer, prefix: str, tmp_path: Path) -> Callable[[int], Engine]:
    return lambda partitions: Engine(kafka_broker, real_server, prefix, partitions, tmp_path)


def differences(got: Any, want: Any, path: str = "") -> list[str]:
    """Where two values of a derived view differ (JSON inside fields is compared as JSON), at most 10."""
    if isinstance(got, bytes) and isinstance(want, bytes) and got[:1] in (b"{", b"["):
        got, want = json.loads(got), json.loads(want)
    if isinstance(got, dict) and isinstance(want, dict):
        found = [f"{path}/{k}: only on one side" for k in got.keys() ^ want.keys()]
        for k in got.keys() & want.keys():
            found += differences(got[k], want[k], f"{path}/{k!s}")
        return found[:10]
    if isinstance(got, list) and isinstance(want, list) and len(got) == len(want):
        return [d for i, (g, w) in enumerate(zip(got, want)) for d in differences(g, w, f"{path}[{i}]")][:10]
    return [] if got == want else [f"{path}: {got!r:.120} != {want!r:.120}"]


def stop_all(procs: Sequence[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_the_faust_engine_writes_what_the_redis_runtime_writes(engine: Callable[[int], Engine], client: redis.Redis) -> None:
    faust = engine(1)
    worker = faust.worker("w1")
    try:
        faust.wait_for_topic()
        faust.send(LOG)
        faust.wait(lambda: faust.counters().get("ticks_total") == SECONDS, "the worker to fold the log")
    finally:
        stop_all([worker])
    written = derived(client, faust.names)
    expected = redis_runtime(faust.server.url, client, Names(faust.prefix + "-redis"), LOG)
    assert expected["stream alerts"] and expected["stream stats"], "the log must fire alerts and close windows"
    assert written == expected
    assert faust.counters() == {**committed_counters(client, Names(faust.prefix + "-redis"), "monitor"), "entries_total": len(LOG)}


def test_a_worker_killed_mid_run_changes_no_output(engine: Callable[[int], Engine], client: redis.Redis) -> None:
    """Two workers, four partitions; the one folding is SIGKILLed mid-run and restarted under its name, as a
    supervisor would. Every output equals the Redis runtime's over the same log in the one order."""
    faust = engine(4)
    workers = {name: faust.worker(name) for name in ("w1", "w2")}
    try:
        faust.wait_for_topic()
        half = 6 * (SECONDS // 2)
        partition_of = faust.send(LOG[:half])
        pid = faust.wait(lambda: faust.counters().get("ticks_total", 0) >= 5 and faust.folding_pid(), "the folding to start")
        victim = next(name for name, proc in workers.items() if proc.pid == pid)
        workers[victim].send_signal(signal.SIGKILL)
        workers[victim].wait()
        killed_at = faust.counters()
        time.sleep(RESTART_DELAY_S)  # the broker's clock, which nothing here can observe: see RESTART_DELAY_S
        workers[victim] = faust.worker(victim)
        # The rest is sent once the replacement is up. A replacement with no committed offset skips what Faust
        # fetched before its stream was ready, and reads it back from the topic when the next record comes
        # (in production, the next tick); sent sooner, the rest could all be skipped with nothing after it.
        faust.wait(lambda: faust.started(victim) == 2, "the replacement to be ready")
        partition_of |= faust.send(LOG[half:])
        faust.wait(lambda: faust.counters().get("ticks_total") == SECONDS, "the workers to fold the log after the kill")
    finally:
        stop_all(list(workers.values()))
    assert killed_at["ticks_total"] < SECONDS, "the kill must land mid-run"
    assert len(set(partition_of.values())) > 1, "the components must be spread over partitions"
    counters = faust.counters()
    assert (counters["events_total"], counters["missing_batches_total"], counters["dead_letters_total"]) == (EVENTS, 0, 0)
    expected = redis_runtime(faust.server.url, client, Names(faust.prefix + "-redis"), canonical(LOG, partition_of.__getitem__))
    written = derived(client, faust.names)
    for key in expected:  # one stream or table at a time, so a failure names it and what differs
        assert written[key] == expected[key], f"{key}: {differences(written[key], expected[key])}"


def test_run_with_the_faust_engine_serves_an_instrumented_program_that_changed_only_its_url(kafka_broker: KafkaBroker, real_server: EmbeddedServer, prefix: str, tmp_path: Path) -> None:
    """`pipepulse run --engine faust`: two workers, the leader's ticks, snapshots in Redis; the facade's events
    go to Kafka (its one new setting) and it reads back exactly what it emitted; an ack from the CLI reaches the
    monitor through the events topic."""
    env = env_for(
        tmp_path, PIPEPULSE_REDIS_URL=real_server.url, PIPEPULSE_PREFIX=prefix, PIPEPULSE_WINDOW_S="2", PIPEPULSE_STALE_AFTER_S="4",
        PIPEPULSE_KAFKA_URL=kafka_broker.url, PIPEPULSE_KAFKA_PARTITIONS="4", PIPEPULSE_ENGINE="faust",
    )
    out = open(tmp_path / "run.log", "wb")
    run = subprocess.Popen([*PIPEPULSE, "run", "--engine", "faust", "--workers", "2", "--no-optimizer", "--no-web", "--no-log-alerts"], env=env, stdout=out, stderr=subprocess.STDOUT)
    out.close()
    service = PerformanceIntegrationService(redis_url=real_server.url, prefix=prefix, config=EmitterConfig(events_url=kafka_broker.url), refresh_interval_s=0.2)
    client = redis.Redis.from_url(real_server.url)
    try:
        Engine(kafka_broker, real_server, prefix, 4, tmp_path).wait_for_topic()
        service.initialize()
        service.start()
        service.register_component("breadcrumb_cache", depends_on=["tree_sitter_manager"])
        workload(service)
        check_against_workload(service)
        alert = wait_until(lambda: service.refresh() and service.get_dashboard_data()["current_metrics"]["active_alerts"] and client.hkeys(Names(prefix).latest("alerts")), timeout_s=30, what="the error-rate alert")
        fingerprint = alert[0].decode()
        ack = subprocess.run([*PIPEPULSE, "alerts", "ack", fingerprint, "--reason", "on it"], env=env, capture_output=True, text=True, timeout=60)
        assert ack.returncode == 0 and f"ack {fingerprint}: applied" in ack.stdout, ack.stdout + ack.stderr
        acked = json.loads(client.hget(Names(prefix).latest("alerts"), fingerprint) or "null")
        assert acked is not None and acked["acked_by"], acked

        def monitor_figures() -> dict[str, Any] | None:
            status = subprocess.run([*PIPEPULSE, "status", "--json"], env=env, capture_output=True, text=True, timeout=60)
            figures: dict[str, Any] = json.loads(status.stdout)["runtime"].get("monitor", {})
            return figures if figures.get("lag_entries") is not None else None

        figures = wait_until(monitor_figures, timeout_s=30, what="the monitor's lag in status")
        assert figures["engine"] == "faust" and isinstance(figures["lag_entries"], int)
    finally:
        service.stop()
        run.send_signal(signal.SIGTERM)
        run.wait(60)
        client.close()
    assert run.returncode == 0, (tmp_path / "run.log").read_text()[-3000:]
