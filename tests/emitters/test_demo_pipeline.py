"""The demo pipeline under control settings and injected faults, in this process with real pool workers."""

from __future__ import annotations

import time
from pathlib import Path

import fakeredis
import pytest
import redis

from emitters import EmitterConfig
from emitters.demo.faults import FAULT_KINDS, MEMORY_GROWTH_BYTES_PER_S, FaultWatcher, active_faults
from emitters.demo.instruments import Instruments
from emitters.demo.pipeline import Pipeline
from emitters.demo.tree import Churner, copy_sources
from processors.embedded import EmbeddedServer
from schemas import LifecycleEvent, Names, OperationEvent
from schemas.control import ControlSetting, encode

from tests.emitters.helpers import DEMO_FILES as FILES
from tests.emitters.helpers import DEMO_TREE, delivered_batches

NOW_S = 1_000_000.0


def test_fault_kinds() -> None:
    assert FAULT_KINDS == ("slow_parse", "error_burst", "memory_growth", "crash_worker", "throttle")


@pytest.mark.parametrize(
    ("stored", "active"),
    [
        ({b"slow_parse": b"1000010"}, {"slow_parse": 1_000_010.0}),
        ({b"slow_parse": b"1000000"}, {}),  # ends now: over
        ({b"throttle": b"1000000.5", b"error_burst": b"999999"}, {"throttle": 1_000_000.5}),
        ({b"unknown_fault": b"1000010"}, {}),
        ({b"crash_worker": b"soon"}, {}),
    ],
)
def test_active_faults(stored: dict[bytes | str, bytes | str], active: dict[str, float]) -> None:
    assert active_faults(stored, NOW_S) == active


def test_memory_growth_retains_20_mb_per_second_while_active_and_a_crash_is_taken_once_per_fault() -> None:
    client = fakeredis.FakeRedis()
    now = [NOW_S]
    watcher = FaultWatcher(client, prefix="t", clock=lambda: now[0])
    key = Names("t").demo_faults
    client.hset(key, mapping={"memory_growth": NOW_S + 10, "crash_worker": NOW_S + 5})
    watcher.read()
    assert watcher.ballast_bytes == MEMORY_GROWTH_BYTES_PER_S
    assert [watcher.take_crash(), watcher.take_crash()] == [True, False]
    now[0] += 2
    watcher.read()
    assert watcher.ballast_bytes == 3 * MEMORY_GROWTH_BYTES_PER_S
    assert watcher.kinds == {"memory_growth", "crash_worker"}
    client.hset(key, "crash_worker", NOW_S + 30)  # a new crash fault
    watcher.read()
    assert watcher.take_crash()
    now[0] = NOW_S + 10
    watcher.read()
    assert (watcher.ballast_bytes, watcher.kinds) == (0, frozenset({"crash_worker"}))


def control_setting(setting: str, value: int, version: int = 1) -> str:
    now_s = time.time()
    return encode(
        ControlSetting(component="extractor" if setting != "cache_size" else "breadcrumb_cache", setting=setting, value=value, version=version, issued_by="test", recommendation_id=None, issued_at_s=now_s, expires_at_s=now_s + 600)
    )


def instrumented(root: Path, files: list[str], url: str, prefix: str, concurrency: int) -> tuple[Pipeline, Instruments]:
    """Control and faults are read when the test says (refresh, read), not by their threads."""
    instruments = Instruments(EmitterConfig(redis_url=url, prefix=prefix), concurrency=concurrency, cache_size=16)
    return Pipeline(root, files, concurrency=concurrency, cache_size=16, instruments=instruments), instruments


def operations(client: redis.Redis, prefix: str, component: str, operation: str) -> list[OperationEvent]:
    return [
        e for b in delivered_batches(client, prefix) if b.component == component for e in b.events if isinstance(e, OperationEvent) and e.operation == operation
    ]


def test_a_crashed_worker_breaks_the_pool_until_a_restart_is_requested(tmp_path: Path, real_server: EmbeddedServer, client: redis.Redis, prefix: str) -> None:
    copy_sources(DEMO_TREE, FILES, tmp_path)
    pipeline, instruments = instrumented(tmp_path, FILES, real_server.url, prefix, concurrency=1)
    names = Names(prefix)
    try:
        assert pipeline.step().files_processed == 3
        client.hset(names.demo_faults, "crash_worker", time.time() + 600)
        instruments.faults.read()
        churner = Churner(tmp_path, FILES)
        churner.touch("script.py")
        churner.touch("pkg/util.py")
        broken = pipeline.step()
        assert (broken.files_processed, broken.files_failed) == (0, 2)
        retried = pipeline.step()  # not healed by itself: the retries fail as well
        assert (retried.files_changed, retried.files_processed, retried.files_failed) == (0, 0, 2)
        client.hset(names.control("extractor"), "restart_generation", control_setting("restart_generation", 1))
        instruments.extractor_control.refresh()
        healed = pipeline.step()  # the crash fault is still on, but it crashed its one worker already
        assert (healed.files_processed, healed.files_failed) == (2, 0)
        assert pipeline.extractor.pools_total == 2
    finally:
        pipeline.close()
        instruments.close()
    failures = [e.error_type for e in operations(client, prefix, "extractor", "extract") if not e.ok]
    assert failures == ["BrokenProcessPool"] * 4
    configured = [e.config for b in delivered_batches(client, prefix) for e in b.events if isinstance(e, LifecycleEvent) and e.kind == "configured"]
    assert configured == [{"restart_generation": 1, "restart_generation_version": 1}]


def test_new_concurrency_and_cache_size_are_applied_between_dispatches(tmp_path: Path, real_server: EmbeddedServer, client: redis.Redis, prefix: str) -> None:
    copy_sources(DEMO_TREE, FILES, tmp_path)
    pipeline, instruments = instrumented(tmp_path, FILES, real_server.url, prefix, concurrency=2)
    names = Names(prefix)
    try:
        pipeline.step()
        client.hset(names.control("extractor"), "concurrency", control_setting("concurrency", 3))
        client.hset(names.control("breadcrumb_cache"), "cache_size", control_setting("cache_size", 32))
        instruments.extractor_control.refresh()
        instruments.cache_control.refresh()
        Churner(tmp_path, FILES).touch("script.py")
        assert pipeline.step().files_processed == 1
        assert (pipeline.extractor.concurrency, pipeline.extractor.pools_total, pipeline.cache.max_entries) == (3, 2, 32)
    finally:
        pipeline.close()
        instruments.close()


@pytest.fixture
def many_files(tmp_path: Path) -> list[str]:
    files = [f"m{i:02}.py" for i in range(40)]
    for name in files:
        (tmp_path / name).write_text(f"def f{name[1:3]}():\n    return print(len('x'))\n")
    return files


# fault, concurrency, failures expected, their error types, whether every parse took the slow fault's 50 ms
FAULT_CASES = {
    "throttle, one worker: the downstream is never busy": ("throttle", 1, False, set(), False),
    "throttle, two workers: they collide": ("throttle", 2, True, {"Throttled"}, False),
    "error burst": ("error_burst", 2, True, {"InjectedError"}, False),
    "slow parse": ("slow_parse", 2, False, set(), True),
}


@pytest.mark.parametrize(("fault", "concurrency", "fails", "error_types", "slow"), list(FAULT_CASES.values()), ids=list(FAULT_CASES))
def test_faults_reach_the_workers(
    tmp_path: Path, many_files: list[str], real_server: EmbeddedServer, client: redis.Redis, prefix: str, fault: str, concurrency: int, fails: bool, error_types: set[str], slow: bool
) -> None:
    pipeline, instruments = instrumented(tmp_path, many_files, real_server.url, prefix, concurrency)
    try:
        assert pipeline.step().files_processed == len(many_files)  # every worker is up before the fault
        churner = Churner(tmp_path, many_files)
        for name in many_files:
            churner.touch(name)
        client.hset(Names(prefix).demo_faults, fault, time.time() + 600)
        instruments.faults.read()
        faulty = pipeline.step()
        assert (faulty.files_failed > 0) is fails
        assert faulty.files_processed + faulty.files_failed == len(many_files)
        client.delete(Names(prefix).demo_faults)
        instruments.faults.read()
        retried = pipeline.step()  # injected failures say nothing about the file: retried, and now they pass
        assert (retried.files_processed, retried.files_failed) == (faulty.files_failed, 0)
    finally:
        pipeline.close()  # the workers deliver their events as they exit
        instruments.close()
    parses = operations(client, prefix, "parser", "parse")
    extracts = operations(client, prefix, "extractor", "extract")
    assert {e.error_type for e in parses + extracts if not e.ok} == error_types
    assert sum(not e.ok for e in parses + extracts) == faulty.files_failed
    assert len(parses) == 2 * len(many_files) + faulty.files_failed
    faulty_parses = sorted(parses, key=lambda e: e.timestamp_s)[len(many_files) : 2 * len(many_files)]
    assert all(e.duration_ms >= 50 for e in faulty_parses) is slow
