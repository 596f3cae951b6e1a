"""The integration facade's own contract, without the processors: it never raises into its host or blocks it,
its lifecycle calls work with and without await, and alerts map to the integration vocabulary."""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import socket
import threading
import time

import pytest
import redis

from emitters import ConfigError, EmitterConfig, PerformanceAlert, PerformanceIntegrationService
from emitters.integration_alerts import CallbackRunner
from processors.embedded import EmbeddedServer, free_port
from schemas import CountEvent, LifecycleEvent, OperationEvent
from schemas.alerts import AlertEvent

from tests.conftest import wait_until
from tests.emitters.helpers import delivered_batches

EVENT = AlertEvent(
    event_id="000000000007-f00d", fingerprint="f00d", rule="max_error_rate", labels={"component": "B"}, severity="critical", state="firing", transition="firing",
    value=0.4, threshold=0.25, message="error rate of B is 40.0% (limit 25%) (upstream A is critical)", at_s=1_800_000_010.0, active_since_s=1_800_000_005.0,
    fired_at_s=1_800_000_010.0, cause="upstream A is critical",
)


def test_with_the_server_down_nothing_raises_nothing_blocks_and_the_views_say_unknown() -> None:
    service = PerformanceIntegrationService(redis_url=f"redis://127.0.0.1:{free_port()}/0", alert_callback=lambda alert: None, refresh_interval_s=0.05)
    started = time.monotonic()
    service.initialize()
    service.start()
    service.register_component("breadcrumb_cache", depends_on=["tree_sitter_manager"])
    for _ in range(1000):
        service.track_operation(component="breadcrumb_cache", operation_name="resolve_breadcrumb", duration_ms=5.2, success=True, cache_hits=1)
        service.record_cache_operation(component="breadcrumb_cache", operation_type="get", hit=False)
    health, dashboard = service.get_health_status(), service.get_dashboard_data()
    assert (health["overall_score"], health["level"], health["components"]) == (None, "unknown", {})
    assert dashboard["current_metrics"]["error_rate"] is None and dashboard["component_health"] == {} and dashboard["charts"]["timestamps"] == []
    assert service.stats().components == 1 and service.stats().snapshot_age_s is None and service.stats().refresh_errors_total >= 1
    service.stop(timeout_s=0.5)
    assert time.monotonic() - started < 10  # connection attempts are bounded by the socket timeout, once each


def test_a_malformed_url_or_prefix_is_a_clear_error() -> None:
    with pytest.raises(ConfigError, match="redis_url"):
        PerformanceIntegrationService(redis_url="not-a-url").initialize()
    with pytest.raises(ConfigError, match="prefix"):
        PerformanceIntegrationService(prefix="has space")


def test_lifecycle_calls_are_awaitable_inside_a_loop_and_done_at_once_outside() -> None:
    service = PerformanceIntegrationService(redis_url=f"redis://127.0.0.1:{free_port()}/0", sample_system=False)
    done = service.initialize()  # no loop: already done
    asyncio.run(_await(done))  # and still awaitable

    async def inside() -> None:
        await service.start()
        await service.stop(timeout_s=0.5)

    asyncio.run(inside())
    assert service.stats().components == 0


async def _await(completion: object) -> None:
    await completion  # type: ignore[misc]


def test_an_alert_event_maps_to_the_integration_vocabulary() -> None:
    alert = PerformanceAlert.from_event(EVENT)
    assert (alert.alert_type, alert.component, alert.value, alert.threshold, alert.timestamp, alert.started_at) == ("critical", "B", 0.4, 0.25, EVENT.at_s, EVENT.active_since_s)
    assert alert.cause == "upstream A is critical" and alert.status == "firing" and not alert.is_resolved and alert.alert_id == "f00d"


def test_an_alert_event_of_version_1_still_reads_with_no_cause() -> None:
    fields = EVENT.to_fields()
    body = json.loads(fields["json"])
    del body["cause"]
    body["v"] = 1
    assert AlertEvent.from_fields({"id": fields["id"], "json": json.dumps(body)}).cause is None


def test_an_async_callback_runs_to_completion_before_the_alert_counts_as_delivered() -> None:
    seen: list[str] = []

    async def handle(alert: PerformanceAlert) -> None:
        await asyncio.sleep(0)
        seen.append(alert.event_id)

    CallbackRunner(handle, timeout_s=5)(EVENT)  # no loop of the host's: one of its own
    assert seen == [EVENT.event_id]

    async def on_the_hosts_loop() -> None:
        runner = CallbackRunner(handle, timeout_s=5)
        runner.loop = asyncio.get_running_loop()
        await asyncio.to_thread(runner, EVENT)  # the subscriber's thread waits for the loop to run it

    asyncio.run(on_the_hosts_loop())
    assert seen == [EVENT.event_id] * 2


def test_registering_again_declares_dependencies_only_when_given(client: redis.Redis, prefix: str, real_server: EmbeddedServer) -> None:
    service = PerformanceIntegrationService(redis_url=real_server.url, prefix=prefix, sample_system=False)
    service.register_component("extractor", depends_on=["parser"], config={"workers": 2})
    service.register_component("extractor")  # nothing declared: what it depends on stays as it was
    service.register_component("extractor", depends_on=[])  # declared: it now depends on nothing
    service.track_operation(component="detector", operation_name="detect", duration_ms=1.0)  # never registered: registered by recording
    assert service.flush(timeout_s=10)
    service.stop()
    declared = [(b.component, e.kind, e.depends_on) for b in delivered_batches(client, prefix) for e in b.events if isinstance(e, LifecycleEvent) and e.kind != "stopped"]
    assert declared == [("extractor", "started", ("parser",)), ("extractor", "registered", ()), ("detector", "started", None)]


def test_settings_that_would_fail_later_fail_at_construction() -> None:
    for bad in ({"sample_interval_s": 0}, {"refresh_interval_s": -1}, {"callback_timeout_s": 0}, {"history_windows": 0}):
        with pytest.raises(ConfigError):
            PerformanceIntegrationService(redis_url="redis://127.0.0.1:1/0", **bad)  # type: ignore[arg-type]


def test_stop_keeps_to_its_timeout_however_many_components_are_waiting() -> None:
    service = PerformanceIntegrationService(redis_url=f"redis://127.0.0.1:{free_port()}/0", sample_system=False)
    for i in range(6):
        service.track_operation(component=f"c{i}", operation_name="op", duration_ms=1.0)  # undeliverable: the server is down
    started = time.monotonic()
    service.stop(timeout_s=1.0)
    assert time.monotonic() - started < 2.5  # one shared deadline, not 1 s per component


def test_lifecycle_calls_not_awaited_still_run_in_the_order_made(prefix: str) -> None:
    with socket.socket() as silent:  # accepts connections and never answers: start() waits out its socket timeouts
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        url = f"redis://127.0.0.1:{silent.getsockname()[1]}/0"
        service = PerformanceIntegrationService(redis_url=url, prefix=prefix, alert_callback=lambda alert: None, sample_system=False, config=EmitterConfig(socket_timeout_s=0.3))

        async def fire_and_forget() -> None:
            started = service.start()  # slow
            service.stop(timeout_s=3)  # quick: run before start() had finished, it would stop nothing
            await service.stop(timeout_s=3)
            await started

        asyncio.run(fire_and_forget())
    alive = {t.name for t in threading.enumerate() if prefix in t.name}  # this service's refresher and subscriber
    assert not alive, alive


def test_counts_and_tracked_blocks_are_recorded_for_their_component(client: redis.Redis, prefix: str, real_server: EmbeddedServer) -> None:
    service = PerformanceIntegrationService(redis_url=real_server.url, prefix=prefix, sample_system=False)
    service.record_count("watcher", "files_processed", 3)
    with pytest.raises(ValueError):
        with service.track("parser", "parse"):
            raise ValueError("a parse that fails is recorded, and the error still reaches the caller")
    assert service.flush(timeout_s=10)
    service.stop()
    events = [(b.component, e) for b in delivered_batches(client, prefix) for e in b.events]
    assert [(c, e.name, e.value) for c, e in events if isinstance(e, CountEvent)] == [("watcher", "files_processed", 3)]
    assert [(c, e.operation, e.ok, e.error_type) for c, e in events if isinstance(e, OperationEvent)] == [("parser", "parse", False, "ValueError")]


def test_an_async_callback_that_times_out_is_cancelled_before_it_is_retried() -> None:
    running: list[int] = []
    overlapped: list[bool] = []

    async def slow(alert: PerformanceAlert) -> None:
        overlapped.append(bool(running))
        running.append(1)
        try:
            await asyncio.sleep(10)
        finally:
            running.pop()

    async def on_the_hosts_loop() -> None:
        runner = CallbackRunner(slow, timeout_s=0.2)
        runner.loop = asyncio.get_running_loop()
        for _ in range(2):  # the subscriber's retry after a timeout
            with pytest.raises(concurrent.futures.TimeoutError):
                await asyncio.to_thread(runner, EVENT)
            await asyncio.sleep(0.05)  # lets the cancellation reach the coroutine (the loop's turn), not synchronisation

    asyncio.run(on_the_hosts_loop())
    assert overlapped == [False, False] and running == []


def test_with_inside_a_coroutine_runs_async_callbacks_on_that_loop(client: redis.Redis, prefix: str, real_server: EmbeddedServer) -> None:
    stream = f"{prefix}:alerts"
    on_threads: list[int] = []

    async def handle(alert: PerformanceAlert) -> None:
        on_threads.append(threading.get_ident())

    async def inside() -> int:
        with PerformanceIntegrationService(redis_url=real_server.url, prefix=prefix, alert_callback=handle, sample_system=False):
            await asyncio.to_thread(wait_until, lambda: client.exists(stream) and client.xinfo_groups(stream), 10.0, "the alert group")
            client.xadd(stream, EVENT.to_fields())  # type: ignore[arg-type]
            await asyncio.to_thread(wait_until, lambda: on_threads, 10.0, "the alert")
        return threading.get_ident()

    assert on_threads == [asyncio.run(inside())]  # the loop's own thread


def test_a_dependency_given_as_one_name_is_one_dependency() -> None:
    from emitters import Emitter
    from emitters.testing import MemorySink

    sink = MemorySink()
    em = Emitter("extractor", sink=sink, depends_on="parser")  # type: ignore[arg-type]
    em.declare_dependencies("cache")  # type: ignore[arg-type]
    em.flush()
    em.close()
    assert [e.depends_on for e in sink.events if isinstance(e, LifecycleEvent) and e.depends_on is not None] == [("parser",), ("cache",)]
