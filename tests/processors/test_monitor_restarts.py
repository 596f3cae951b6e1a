"""Restarts keep alert state: SIGKILL the monitor while alerts are pending and firing; after the restart
their timings are unchanged and nothing fires twice (the uninterrupted pure fold is the oracle)."""

from __future__ import annotations

import json
import random
import signal
import time
from typing import Any

import redis

from schemas.names import Names

from processors.ledger import Ledger
from processors.runtime import read_derived

from tests.conftest import wait_until
from tests.processors.alerting import entries, monitor
from tests.processors.helpers import T0, items, op, stream_outputs, system
from tests.processors.test_runtime import Workers, caught_up, client, seed, stop, workers

__all__ = ["client", "workers"]  # fixtures


def faulty(second: int) -> dict[str, list[list[Any]]]:
    """A cache that degrades (pending for 10 s, then firing), an error burst, a component that goes silent."""
    hit = 0 if 20 <= second < 60 else 1
    failing = 40 <= second < 50
    rows = [op(T0 + second + (i + 0.5) / 30, hits=hit, misses=1 - hit, ok=not (failing and i % 2), error_type="E") for i in range(30)]
    out = {"parser": rows + [system(T0 + second + 0.99, rss=(1 << 30) + second * 1_000_000)]}
    if second < 30:
        out["watcher"] = [op(T0 + second + 0.5)]
    return out


def test_sigkill_while_alerts_are_pending_and_firing_changes_no_timing_and_fires_nothing_twice(client: redis.Redis, workers: Workers) -> None:
    log = entries(faulty, 100)
    expected = monitor().apply(items(log, Ledger()))
    expected_alerts = stream_outputs(expected, "alerts")
    transitions = [json.loads(e["json"])["transition"] for e in expected_alerts]
    assert {"pending", "firing", "resolved"} <= set(transitions)
    rng = random.Random(7)
    fast = ("--monitor", "--lease-ttl", "0.5", "--read-count", "3")
    chunks = [log[i : i + 20] for i in range(0, len(log), 20)]
    for n, chunk in enumerate(chunks):
        seed(client, chunk)
        if n % 3 == 0:
            stage = ("read", "applied", "committing")[n // 3 % 3]
            proc = workers.start(*fast, "--crash-stage", stage, "--crash-at", str(rng.randint(1, 5)))
            assert proc.wait(timeout=30) == -signal.SIGKILL
        else:
            proc = workers.start(*fast)
            time.sleep(rng.uniform(0.2, 0.6))  # the random instant of the kill, not a wait for a condition
            proc.kill()
            proc.wait()
    proc = workers.start(*fast)
    token = proc.stdout.readline().split()[-1]  # type: ignore[union-attr]
    wait_until(lambda: client.get(Names("t").lease("monitor")) == token.encode(), what="the last instance to take the lease")
    wait_until(lambda: caught_up(client, processor="monitor"), timeout_s=60, what="the monitor to finish after the crashes")
    stop(proc)
    names = Names("t")
    live = read_derived(client, names, "alerts")
    assert live == expected_alerts
    ids = [e["id"] for e in live]
    assert len(ids) == len(set(ids))
    assert read_derived(client, names, "health") == stream_outputs(expected, "health")
    assert read_derived(client, names, "forecasts") == stream_outputs(expected, "forecasts")
