"""Emitters in real processes against the real embedded server: outages, forks, concurrency."""

from __future__ import annotations

import multiprocessing
import os
from typing import Callable

import psutil
import pytest
import redis

from emitters import Emitter, EmitterConfig
from processors.embedded import EmbeddedServer
from schemas import OperationEvent

from tests.emitters.helpers import delivered_batches, unique_by_producer


def test_server_stopped_mid_run_host_unharmed_and_losses_exact(server_factory: Callable[..., EmbeddedServer]) -> None:
    server = server_factory(appendonly=True)
    bound = 1_000
    em = Emitter("parser", redis_url=server.url, config=EmitterConfig(buffer_max_events=bound, flush_interval_s=0.01, socket_timeout_s=0.5))
    attempted = 0
    for i in range(500):
        em.record("before", duration_ms=float(i))
        attempted += 1
    assert em.flush(10)
    server.stop()
    rss_before = psutil.Process().memory_info().rss
    for i in range(50_000):
        em.record("during", duration_ms=float(i))
        with em.track("during_tracked"):
            pass
        attempted += 2
        stats = em.stats()
        if i % 1_000 == 0:
            assert stats.buffered <= bound
    rss_growth = psutil.Process().memory_info().rss - rss_before
    assert rss_growth < 50 * 2**20, f"memory grew {rss_growth} bytes during the outage"
    assert em.stats().dropped_total > 0
    server.start()  # same port, same data directory (AOF): the flusher must find it by itself
    assert em.flush(20)
    stats = em.stats()
    assert (stats.buffered, stats.in_flight, stats.invalid_total) == (0, 0, 0)
    assert stats.dropped_total == attempted + 1 - stats.delivered_total  # +1: the `started` event
    client = redis.Redis.from_url(server.url)
    (producer,) = unique_by_producer(delivered_batches(client)).values()
    assert sorted(producer) == list(range(len(producer)))  # gap-free: nothing lost after Redis accepted it
    assert sum(len(b.events) for b in producer.values()) == stats.delivered_total
    em.close()
    client.close()


def _child_records(redis_url: str, label: str, count: int) -> None:
    em = Emitter(label, redis_url=redis_url, config=EmitterConfig(batch_max_events=50))
    for i in range(count):
        em.record("work", duration_ms=float(i))
    # no close(): emitters deliver at process exit by themselves


def _forked_child_records(label: str, count: int) -> None:
    from emitters.emitter import _live  # the parent's emitter, re-initialised by the fork hook

    (em,) = list(_live)
    for i in range(count):
        em.record(label, duration_ms=float(i))


@pytest.mark.filterwarnings("ignore:.*fork.*:DeprecationWarning")
def test_many_processes_and_forked_children_each_gap_free(real_server: EmbeddedServer) -> None:
    client = redis.Redis.from_url(real_server.url)
    client.flushall()
    parent = Emitter("parent", redis_url=real_server.url, config=EmitterConfig(batch_max_events=50))
    for i in range(300):
        parent.record("parent_work", duration_ms=float(i))
    spawn, fork = multiprocessing.get_context("spawn"), multiprocessing.get_context("fork")
    workers: list[multiprocessing.process.BaseProcess] = [spawn.Process(target=_child_records, args=(real_server.url, f"spawned{n}", 2_000)) for n in range(3)]
    workers += [fork.Process(target=_forked_child_records, args=(f"forked{n}", 2_000)) for n in range(2)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(60)
        assert w.exitcode == 0
    assert parent.close(10)
    by_producer = unique_by_producer(delivered_batches(client))
    assert len(by_producer) == 6
    assert parent.producer_id in by_producer
    per_label: dict[str, int] = {}
    for batches in by_producer.values():
        assert sorted(batches) == list(range(len(batches))), "sequence gap"
        for batch in batches.values():
            for event in batch.events:
                if isinstance(event, OperationEvent):
                    key = event.component if event.component.startswith("spawned") else event.operation
                    per_label[key] = per_label.get(key, 0) + 1
    assert per_label == {"parent_work": 300, **{f"spawned{n}": 2_000 for n in range(3)}, **{f"forked{n}": 2_000 for n in range(2)}}
    pids = {b.pid for batches in by_producer.values() for b in batches.values()}
    assert os.getpid() in pids and len(pids) == 6
    client.close()
