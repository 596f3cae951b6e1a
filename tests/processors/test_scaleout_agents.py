"""The Faust engine's agents under Faust's own test context: no broker, no producer started."""

from __future__ import annotations

import asyncio
from pathlib import Path

import faust
import redis

from schemas.codec import unpack
from schemas.names import Names

from processors.embedded import EmbeddedServer
from processors.monitor import MonitorProcessor, MonitorSettings
from processors.runtime import applied_state, parse_checkpoint
from processors.rules import load_rules
from processors.scaleout.app import EngineSettings, build_app
from processors.scaleout.ordering import KIND_HEADER, TICK_KIND, tick_value
from processors.scaleout.statelog import StateLog

from tests.processors.test_scaleout_fold import ordered_records, redis_runtime
from tests.scaleout_log import derived, seeded_log


def app(tmp_path: Path, redis_url: str = "redis://127.0.0.1:9/0", prefix: str = "agents") -> faust.App:
    settings = EngineSettings(
        kafka_url="kafka://127.0.0.1:9",  # never contacted
        redis_url=redis_url,
        names=Names(prefix),
        processor_factory=lambda: MonitorProcessor(MonitorSettings(rules=load_rules(None))),
        data_dir=tmp_path,
        tick_interval_s=None,
    )
    built = build_app(settings)
    built.finalize()
    built.conf.store = "memory://"
    built.flow_control.resume()
    return built


def test_every_record_is_forwarded_with_its_partition_offset_and_kind(tmp_path: Path) -> None:
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)  # the one Faust takes; closed below, or it warns at exit
    built = app(tmp_path)
    forward = built.agents["processors.scaleout.app.forward"]

    async def run() -> list[list[object]]:
        async with forward.test_context(sink=[]) as agent:
            await agent.put(b"batch-1", key=b"parser", partition=2)
            await agent.put(tick_value(1_800_000_000.0, 4), partition=2, headers=[(KIND_HEADER, TICK_KIND)])
            await agent.put(b"batch-2", key=b"parser", partition=2, headers=[("other", b"x")])
            return [unpack(value) for value in agent.results.values()]

    try:
        results = loop.run_until_complete(run())
    finally:
        asyncio.set_event_loop(None)
        loop.close()
        built.consumer._thread.thread_loop.close()  # the consumer's (never started) thread made a loop of its own
    assert results == [[2, 0, False, b"batch-1"], [2, 1, True, tick_value(1_800_000_000.0, 4)], [2, 2, False, b"batch-2"]]


def test_the_monitor_agent_folds_ordered_records_into_redis_and_its_table(tmp_path: Path, real_server: EmbeddedServer, prefix: str) -> None:
    """Records of the ordered topic, put to the agent as Faust would deliver them: Redis gets what the Redis
    runtime writes for the same log, and the table holds the state a replacement worker would recover."""
    log = seeded_log(seed=3, seconds=30)
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    built = app(tmp_path, redis_url=real_server.url, prefix=prefix)
    monitor = built.agents["processors.scaleout.app.monitor"]
    client = redis.Redis.from_url(real_server.url)

    async def run() -> None:
        async with monitor.test_context() as agent:
            for _, value in ordered_records(log):  # test_context numbers them from 0, as ordered_records does
                await agent.put(value)
            wait = loop.time() + 20
            while applied_state(client, Names(prefix), "faust")[0] < len(log) - 1 and loop.time() < wait:
                await asyncio.sleep(0.05)  # the agent folds in batches of up to 50 ms: this awaits it, with a deadline

    try:
        loop.run_until_complete(run())
    finally:
        asyncio.set_event_loop(None)
        loop.close()
        built.consumer._thread.thread_loop.close()
    assert applied_state(client, Names(prefix), "faust")[0] == len(log) - 1
    expected = derived(redis_runtime(log, Names("x")), Names("x"))
    assert expected["stream stats"] and derived(client, Names(prefix)) == expected
    state = StateLog(built.tables["state"])
    assert state.offset == len(log) - 1 and parse_checkpoint(state.load())  # what a replacement recovers
