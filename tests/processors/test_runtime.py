"""The runtime against the real embedded server and real processes: crashes, poison, standby, restarts."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
import redis

from schemas.codec import PAYLOAD_FIELD, pack, pack_envelope
from schemas.names import Names

from processors.embedded import EmbeddedServer
from processors.ledger import Ledger
from processors.intake import Entry
from processors.replay import replay
from processors.runtime import RuntimeSettings, Worker, load_checkpoint, read_derived
from processors.stats import StatsProcessor

from tests.conftest import wait_until
from tests.processors.helpers import T0, batch, items, op, stream_outputs, tick
from tests.processors.test_stats import workload

WORKER = [sys.executable, "-m", "tests.processors.worker_main"]
ROOT = Path(__file__).parent.parent.parent


@pytest.fixture
def client(real_server: EmbeddedServer) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(real_server.url)
    client.flushall()
    yield client
    client.close()


class Workers:
    """Worker processes a test starts; all killed at the end."""

    def __init__(self, url: str, prefix: str) -> None:
        self.url, self.prefix = url, prefix
        self.started: list[subprocess.Popen[str]] = []

    def start(self, *args: str) -> subprocess.Popen[str]:
        proc = subprocess.Popen([*WORKER, self.url, self.prefix, *args], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.started.append(proc)
        return proc

    def close(self) -> None:
        for proc in self.started:
            if proc.poll() is None:
                proc.kill()
            proc.communicate()


@pytest.fixture
def workers(real_server: EmbeddedServer) -> Iterator[Workers]:
    started = Workers(real_server.url, "t")
    yield started
    started.close()


def seed(client: redis.Redis, entries: list[Entry], names: Names = Names("t")) -> None:
    pipe = client.pipeline(transaction=False)
    for _, fields in entries:
        pipe.xadd(names.events, fields)  # type: ignore[arg-type]
    pipe.execute()


def caught_up(client: redis.Redis, names: Names = Names("t"), processor: str = "stats") -> bool:
    groups = {g["name"].decode(): g for g in client.xinfo_groups(names.events)}  # type: ignore[union-attr]
    group = groups.get(names.group(processor))
    return group is not None and group["lag"] == 0 and group["pending"] == 0


def stop(proc: subprocess.Popen[str]) -> str:
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    return err


def process_uninterrupted(client: redis.Redis, workers: Workers, entries: list[Entry]) -> None:
    seed(client, entries)
    proc = workers.start()
    wait_until(lambda: caught_up(client), what="the worker to catch up")
    stop(proc)


def oracle(entries: list[Entry]) -> tuple[StatsProcessor, Ledger, list[Any]]:
    """The uninterrupted run: the same log folded by the pure processor."""
    processor, ledger = StatsProcessor(), Ledger()
    outputs = processor.apply(items(entries, ledger))
    return processor, ledger, outputs


def assert_equals_oracle(client: redis.Redis, entries: list[Entry]) -> None:
    expected, expected_ledger, outputs = oracle(entries)
    names = Names("t")
    assert read_derived(client, names, "stats") == stream_outputs(outputs, "stats")
    assert read_derived(client, names, "stats_1m") == stream_outputs(outputs, "stats_1m")
    parts, ledger = load_checkpoint(client, names, "stats")
    restored = StatsProcessor()
    restored.restore(parts)
    assert restored.snapshot() == expected.snapshot()
    assert ledger.counters["events_total"] == expected_ledger.counters["events_total"]  # applied once, lost none
    assert ledger.marks == expected_ledger.marks


def test_uninterrupted_worker_equals_the_pure_fold(client: redis.Redis, workers: Workers) -> None:
    entries = workload(seed=11, batches=200)
    process_uninterrupted(client, workers, entries)
    assert_equals_oracle(client, entries)
    assert len(read_derived(client, Names("t"), "stats")) > 10


def test_sigkill_at_crash_points_and_random_instants_loses_nothing_and_applies_nothing_twice(client: redis.Redis, workers: Workers) -> None:
    entries = workload(seed=5, batches=3000)
    chunks = [entries[i : i + len(entries) // 24] for i in range(0, len(entries), len(entries) // 24)]
    rng = random.Random(5)
    fast = ("--lease-ttl", "0.5", "--read-count", "1")
    for stage in ("read", "applied", "committing"):
        seed(client, chunks.pop(0))
        proc = workers.start(*fast, "--crash-stage", stage, "--crash-at", str(rng.randint(1, 50)))
        assert proc.wait(timeout=30) == -signal.SIGKILL
    for chunk in chunks:  # more work arrives before every kill, so each lands on a running worker
        seed(client, chunk)
        proc = workers.start(*fast)
        time.sleep(rng.uniform(0.3, 1.0))  # the random instant of the kill, not a wait for a condition
        proc.kill()
        proc.wait()
    proc = workers.start(*fast)
    wait_until(lambda: caught_up(client), timeout_s=60, what="the worker to finish after the crashes")
    stop(proc)
    assert_equals_oracle(client, entries)


def test_malformed_entries_are_dead_lettered_with_reasons_and_processing_goes_on(client: redis.Redis, workers: Workers) -> None:
    names = Names("t")
    good = [batch([op(T0 + 1)], seq=0), batch([op(T0 + 2)], seq=1)]
    client.xadd(names.events, {PAYLOAD_FIELD: b"\xc1 not msgpack"})
    client.xadd(names.events, {PAYLOAD_FIELD: pack({"v": 99})})
    client.xadd(names.events, {b"x": b"neither batch nor tick"})
    bad_event = pack_envelope(producer_id="p9", seq=0, sent_at_s=T0, component="parser", pid=1, host="h", dropped_total=0, invalid_total=0, rows=[op(T0 + 1, duration_ms=float("nan")), op(T0 + 1)])
    client.xadd(names.events, {PAYLOAD_FIELD: bad_event})
    seed(client, [*good, tick(T0 + 11)])
    proc = workers.start()
    wait_until(lambda: caught_up(client), what="the worker to catch up")
    stop(proc)
    reasons = sorted(fields[b"reason"].decode() for _, fields in client.xrange(names.dead))  # type: ignore[union-attr]
    assert reasons == ["malformed_msgpack", "missing_field", "not_finite", "unknown_version"]
    (document,) = [d for d in read_derived(client, names, "stats")]
    assert '"count":3' in document["json"]  # two good batches, and the good event of the mixed one


def test_a_poison_entry_is_retried_then_dead_lettered_and_the_rest_processed(client: redis.Redis, workers: Workers) -> None:
    names = Names("t")
    seed(client, [batch([op(T0 + 1)], seq=0), batch([op(T0 + 2)], seq=0, producer="px", component="poison"), batch([op(T0 + 3)], seq=1), tick(T0 + 11)])
    proc = workers.start("--poison", "poison", "--max-deliveries", "3")
    wait_until(lambda: caught_up(client), what="the worker to get past the poison entry")
    err = stop(proc)
    ((_, dead),) = client.xrange(names.dead)  # type: ignore[misc]
    assert (dead[b"reason"], dead[b"deliveries"]) == (b"processor_error", b"3")
    assert b"cannot digest poison" in dead[b"detail"]
    (document,) = read_derived(client, names, "stats")
    assert '"count":2' in document["json"]
    assert err.count("failed on a batch") <= 3


def test_the_hot_standby_takes_over_when_the_active_instance_is_killed(client: redis.Redis, workers: Workers) -> None:
    names = Names("t")
    first, second = workers.start("--lease-ttl", "1"), workers.start("--lease-ttl", "1")
    tokens = {proc.stdout.readline().split()[1]: proc for proc in (first, second)}  # type: ignore[union-attr]
    seed(client, [batch([op(T0 + 1)], seq=0)])
    wait_until(lambda: caught_up(client), what="the active instance to process")
    active = tokens[client.get(names.lease("stats")).decode()]  # type: ignore[union-attr]
    standby = second if active is first else first
    active.kill()
    active.wait()
    seed(client, [batch([op(T0 + 2)], seq=1), tick(T0 + 11)])
    wait_until(lambda: caught_up(client), timeout_s=15, what="the standby to take over")
    assert client.get(names.lease("stats")).decode() != [t for t, p in tokens.items() if p is active][0]  # type: ignore[union-attr]
    stop(standby)
    (document,) = read_derived(client, names, "stats")
    assert '"count":2' in document["json"]


@pytest.mark.parametrize("appendonly", [False, True], ids=["no-persistence", "aof"])
def test_server_restart_under_load_resumes_unaided_and_losses_equal_gaps(appendonly: bool, server_factory: Callable[..., EmbeddedServer], tmp_path: Path) -> None:
    server = server_factory(appendonly=appendonly)
    emitters = [
        subprocess.Popen([sys.executable, "-c", EMITTER, server.url, name, seconds], cwd=ROOT, stdout=subprocess.PIPE, text=True)
        for name, seconds in (("watcher", "0.3"), ("parser", "6"), ("extractor", "6"))
    ]
    worker = Workers(server.url, "t")
    client = redis.Redis.from_url(server.url)
    try:
        proc = worker.start("--lease-ttl", "1")
        watcher = emitters[0].communicate(timeout=30)[0]  # a producer that is done before the restart
        wait_until(lambda: caught_up(client), what="the worker to commit the watcher's events")
        proc.send_signal(signal.SIGSTOP)  # a backlog builds up that the server then loses (without persistence)
        time.sleep(0.5)
        server.stop()
        time.sleep(0.5)
        server.start()
        proc.send_signal(signal.SIGCONT)
        reports = [watcher, *(e.communicate(timeout=30)[0] for e in emitters[1:])]
        wait_until(lambda: caught_up(client), timeout_s=30, what="the worker to resume after the restart")
        seed(client, [tick(time.time() + 20)])  # close every window so the producers table is final
        wait_until(lambda: caught_up(client) and client.hlen(Names("t").latest("producers")) >= 3, timeout_s=30, what="final producer figures")
        err = stop(proc)
    finally:
        worker.close()
    delivered = {line.split()[0]: int(line.split()[1]) for line in reports}
    producers = {k.decode(): json.loads(v) for k, v in client.hgetall(Names("t").latest("producers")).items()}  # type: ignore[union-attr]
    for producer_id, sent in delivered.items():
        figures = producers[producer_id]
        # One event per batch: every event Redis accepted and then lost is exactly one missing batch.
        assert sent - figures["events_total"] == figures["missing_batches_total"], figures
    assert sum(p["missing_batches_total"] for p in producers.values()) > 0 or appendonly
    assert err.count("WARNING") <= 20, err  # bounded: no hot loop while the server was away
    assert "Redis server restarted" in err
    # The state of a producer that went quiet before the restart survives it: the checkpoint was rewritten whole.
    parts, ledger = load_checkpoint(client, Names("t"), "stats")
    watcher_id = watcher.split()[0]
    assert ("producer", watcher_id) in parts and watcher_id in ledger.marks
    client.close()


class HeldAfterFirstCommit:
    """A stage hook that holds its worker just after its first commit (its connection idle in the pool, so redis-py
    reconnects it unnoticed) while the test's own thread restarts the server, which dies with the thread that started it."""

    def __init__(self) -> None:
        self.committed, self.released = threading.Event(), threading.Event()

    def __call__(self, stage: str) -> None:
        if stage == "committed" and not self.committed.is_set():
            self.committed.set()
            self.released.wait(30)

    def restart(self, server: EmbeddedServer) -> None:
        wait_until(self.committed.is_set, what="the first commit")
        server.stop()
        server.start()


@contextmanager
def running(worker: Worker) -> Iterator[None]:
    stop = threading.Event()
    thread = threading.Thread(target=worker.run, args=(stop,))
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=10)


def folded(client: redis.Redis, producer: str) -> bool:
    return caught_up(client) and bool(client.hexists(Names("t").latest("producers"), producer))


def test_a_server_restart_noticed_by_a_read_keeps_the_state_the_server_lost(server_factory: Callable[..., EmbeddedServer]) -> None:
    """The restart is seen first as a missing group, not as a failed call."""
    server = server_factory(appendonly=False)
    client = redis.Redis.from_url(server.url)
    seed(client, [batch([op(T0 + 0.5)], seq=1, producer="p1", component="watcher"), tick(T0 + 2)])
    hold = HeldAfterFirstCommit()
    with running(Worker(url=server.url, names=Names("t"), processor=StatsProcessor(), settings=RuntimeSettings(lease_ttl_s=60), on_stage=hold)):
        hold.restart(server)
        hold.released.set()
        seed(client, [batch([op(T0 + 3)], seq=1, producer="p2", component="parser"), tick(T0 + 30)])
        wait_until(lambda: folded(client, "p2"), what="the worker to fold p2 after the restart")
    assert set(client.hkeys(Names("t").latest("producers"))) == {b"p1", b"p2"}  # type: ignore[arg-type]
    client.close()


def test_a_worker_that_finds_a_standby_active_after_a_restart_resumes_from_what_the_standby_committed(server_factory: Callable[..., EmbeddedServer]) -> None:
    server = server_factory(appendonly=False)
    client = redis.Redis.from_url(server.url)
    names, settings = Names("t"), RuntimeSettings(lease_ttl_s=10)  # renewed every 3.3 s: the missing group is seen first
    seed(client, [batch([op(T0 + 0.5)], seq=1, producer="p1", component="watcher"), tick(T0 + 2)])
    hold = HeldAfterFirstCommit()
    first = Worker(url=server.url, names=names, processor=StatsProcessor(), settings=settings, on_stage=hold)
    standby = Worker(url=server.url, names=names, processor=StatsProcessor(), settings=settings)
    with running(first):
        hold.restart(server)
        client.set(names.lease("stats"), standby.lease_token, px=10_000)  # the standby wins the race for the lease the restart lost
        hold.released.set()
        with running(standby):
            seed(client, [batch([op(T0 + 3)], seq=1, producer="p2", component="parser"), tick(T0 + 30)])
            wait_until(lambda: folded(client, "p2"), what="the standby to fold p2")
        wait_until(lambda: client.get(names.lease("stats")) == first.lease_token.encode(), what="the first worker active again")
        seed(client, [batch([op(T0 + 31)], seq=1, producer="p3", component="detector"), tick(T0 + 60)])
        wait_until(lambda: folded(client, "p3"), what="the first worker to fold p3")
    parts, _ = load_checkpoint(client, names, "stats")
    assert {key for key in parts if key[0] == "producer"} == {("producer", "p2"), ("producer", "p3")}  # p1 died with the server
    client.close()


EMITTER = """
import sys, time
from emitters import Emitter, EmitterConfig
url, name, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
em = Emitter(name, config=EmitterConfig(redis_url=url, prefix="t", batch_max_events=1, flush_interval_s=0.005, socket_timeout_s=0.5))
deadline = time.monotonic() + seconds
while time.monotonic() < deadline:
    em.record("work", 1.0)
    time.sleep(0.005)
em.close(timeout_s=10)
stats = em.stats()
print(em.producer_id, stats.delivered_total)
"""


def test_replay_rebuilds_the_live_outputs_whether_it_decodes_in_process_or_in_workers(client: redis.Redis, workers: Workers) -> None:
    entries = workload(seed=21, batches=300)
    process_uninterrupted(client, workers, entries)
    reports = [replay(client, Names("t"), Names(f"r{n}"), StatsProcessor(), decode_workers=n) for n in (0, 1)]
    assert reports[0] == reports[1] and reports[0].matches
    assert read_derived(client, Names("r0"), "stats") == read_derived(client, Names("r1"), "stats") == read_derived(client, Names("t"), "stats")
    first = read_derived(client, Names("t"), "stats")[0]
    client.xadd(Names("t").stream("stats"), {**first, "json": first["json"].replace('"count":', '"count":1')})  # a live window that differs
    tampered = replay(client, Names("t"), Names("r2"), StatsProcessor())
    assert not tampered.matches and tampered.comparisons[0].mismatched == (first["end_s"],)
