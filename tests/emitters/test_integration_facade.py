"""The integration facade's own contract, without the processors: it never raises into its host or blocks it,
its lifecycle calls work with and without await, and alerts map to the integration vocabulary."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
import redis

from emitters import ConfigError, PerformanceAlert, PerformanceIntegrationService
from emitters.integration_alerts import CallbackRunner
from processors.embedded import EmbeddedServer, free_port
from schemas import LifecycleEvent
from schemas.alerts import AlertEvent

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
