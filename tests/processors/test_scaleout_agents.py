"""The Faust engine's forwarding agent under Faust's own test context: no broker, no producer."""

from __future__ import annotations

import asyncio
from pathlib import Path

import faust

from schemas.codec import unpack
from schemas.names import Names

from processors.monitor import MonitorProcessor, MonitorSettings
from processors.rules import load_rules
from processors.scaleout.app import EngineSettings, build_app
from processors.scaleout.ordering import KIND_HEADER, TICK_KIND, tick_value


def app(tmp_path: Path) -> faust.App:
    settings = EngineSettings(
        kafka_url="kafka://127.0.0.1:9",  # never contacted
        redis_url="redis://127.0.0.1:9/0",
        names=Names("agents"),
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
