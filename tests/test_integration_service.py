"""The integration facade end to end: `pipepulse run` on the embedded server, the example as the issue gives it
(async, and sync without await), alerts to a callback across a subscriber restart, and the dependency chain.

Windows of 2 s and staleness after 4 s keep it short; every wait is a condition with a deadline.
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import pytest
import redis

from emitters import PerformanceAlert, PerformanceIntegrationService
from processors.embedded import EmbeddedServer

from tests.conftest import wait_until
from tests.processors.test_cli import PIPEPULSE, env_for

ROOT = Path(__file__).parent.parent
ITERATIONS = 400  # of the workload below: two operations each


@pytest.fixture
def monitored(real_server: EmbeddedServer, prefix: str, tmp_path: Path) -> Iterator[dict[str, str]]:
    """`pipepulse run` (monitor, ticker) for this test's prefix; yields its environment."""
    env = env_for(tmp_path, PIPEPULSE_REDIS_URL=real_server.url, PIPEPULSE_PREFIX=prefix, PIPEPULSE_WINDOW_S="2", PIPEPULSE_STALE_AFTER_S="4")
    run = subprocess.Popen([*PIPEPULSE, "run", "--no-optimizer", "--no-web", "--no-log-alerts"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        yield env
    finally:
        run.send_signal(signal.SIGTERM)
        _, err = run.communicate(timeout=30)
        assert run.returncode == 0, err


def workload(service: PerformanceIntegrationService) -> None:
    """Per iteration: one resolve (a quarter of them failing) with 3 hits and 1 miss, 5 calls and 1 file; one cache get, a hit."""
    for i in range(ITERATIONS):
        service.track_operation(
            component="breadcrumb_cache", operation_name="resolve_breadcrumb", duration_ms=5.2, success=i % 4 != 0,
            cache_hits=3, cache_misses=1, error_type="ParseError", counters={"calls_detected": 5, "files_processed": 1},
        )
        service.record_cache_operation(component="breadcrumb_cache", operation_type="get", hit=True)
        time.sleep(0.005)  # pacing the workload over about 2 s of windows, not synchronisation


def check_against_workload(service: PerformanceIntegrationService, before: int = 0) -> None:
    """What the facade reads back equals what was emitted (`before` operations ahead of the workload): exact totals
    over the closed windows, exact ratios live."""

    def closed_total() -> float:
        charts = service.get_dashboard_data()["charts"]
        return sum(rate * 2 for rate in charts["operations_per_second"])  # 2 s windows

    wait_until(lambda: service.refresh() and closed_total() == 2 * ITERATIONS + before, timeout_s=30, what="every emitted operation in the closed windows")
    charts = service.get_dashboard_data()["charts"]
    assert sum(r * 2 for r in charts["calls_per_second"]) == 5 * ITERATIONS
    assert sum(r * 2 for r in charts["files_per_second"]) == ITERATIONS
    current = service.get_dashboard_data()["current_metrics"]
    assert current["error_rate"] == pytest.approx(1 / 8, abs=0.01)  # 1 failure per 4 iterations of 2 operations
    assert current["cache_hit_rate"] == pytest.approx(4 / 5, abs=0.01)
    assert current["calls_per_second"] == pytest.approx(2.5 * current["operations_per_second"], rel=0.01)
    assert current["memory_usage_mb"] > 1 and current["cpu_percent"] >= 0, current  # this process, sampled by the service
    assert set(current) >= {"pipeline_efficiency", "files_per_second", "active_alerts"}
    health = service.get_health_status()
    assert 0 <= health["overall_score"] <= 100 and health["level"] in ("excellent", "good", "warning", "critical")
    assert health["components"]["breadcrumb_cache"]["status"] in ("healthy", "warning", "critical")
    registry = service.get_components()
    assert registry["breadcrumb_cache"]["depends_on"] == ["tree_sitter_manager"]
    assert registry["breadcrumb_cache"]["status"] == "active"


def test_the_example_runs_as_written_async(monitored: dict[str, str], real_server: EmbeddedServer, prefix: str) -> None:
    url = real_server.url
    received: list[PerformanceAlert] = []

    async def handle_critical_alerts(alert: PerformanceAlert) -> None:
        received.append(alert)

    async def main() -> tuple[dict[str, Any], dict[str, Any]]:
        service = PerformanceIntegrationService(redis_url=url, alert_callback=handle_critical_alerts, prefix=prefix, refresh_interval_s=0.2)
        await service.initialize()
        await service.start()
        service.register_component("breadcrumb_cache", depends_on=["tree_sitter_manager"])
        service.track_operation(component="breadcrumb_cache", operation_name="resolve_breadcrumb",
                                duration_ms=5.2, success=True, cache_hits=1, cache_misses=0)
        service.record_cache_operation(component="breadcrumb_cache", operation_type="get", hit=True)
        health = service.get_health_status()       # overall score, level, per-component status
        dashboard = service.get_dashboard_data()   # current_metrics, charts, component_health
        await asyncio.to_thread(wait_until, lambda: service.refresh() and "breadcrumb_cache" in service.get_dashboard_data()["component_health"], 20.0, "the component in the snapshots")
        await asyncio.to_thread(workload, service)
        await asyncio.to_thread(check_against_workload, service, 2)
        # 12.5 % errors is past the 5 % limit: the error-rate alert reaches the async callback, on this loop
        await asyncio.to_thread(wait_until, lambda: any(a.rule == "max_error_rate" for a in received), 20.0, "the error-rate alert")
        await service.stop()
        return health, dashboard

    health, dashboard = asyncio.run(main())
    assert set(health) >= {"overall_score", "level", "components"} and set(dashboard) >= {"current_metrics", "charts", "component_health"}
    alert = next(a for a in received if a.rule == "max_error_rate")
    assert (alert.alert_type, alert.component, alert.transition) == ("error", "breadcrumb_cache", "firing")
    assert alert.value is not None and alert.value > alert.threshold == 0.05 and "error rate" in alert.message and alert.fired_at is not None


def test_the_example_runs_without_await_in_code_that_is_not_async(monitored: dict[str, str], real_server: EmbeddedServer, prefix: str) -> None:
    service = PerformanceIntegrationService(redis_url=real_server.url, prefix=prefix, refresh_interval_s=0.2)
    service.initialize()
    service.start()
    service.register_component("breadcrumb_cache", depends_on=["tree_sitter_manager"])
    workload(service)
    assert service.flush(timeout_s=10) and service.stats().delivered_total >= 2 * ITERATIONS
    check_against_workload(service)
    service.stop()
    assert service.stats().components == 0  # stopped: every emitter closed after delivering


def test_the_callback_fires_once_per_transition_and_not_again_after_the_subscriber_restarts(monitored: dict[str, str], real_server: EmbeddedServer, prefix: str) -> None:
    client = redis.Redis.from_url(real_server.url, decode_responses=True)
    received: list[PerformanceAlert] = []
    faulty = subprocess.Popen([sys.executable, "-m", "tests.processors.faulty_main", "parser"], cwd=ROOT, env=monitored, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def inject(fault: str) -> None:
        faulty.stdin.write(fault + "\n")  # type: ignore[union-attr]
        faulty.stdin.flush()  # type: ignore[union-attr]
        assert faulty.stdout.readline().strip() == "ok"  # type: ignore[union-attr]

    def paging_events() -> list[dict[str, Any]]:
        events = [json.loads(fields["json"]) for _, fields in client.xrange(f"{prefix}:alerts")]
        return [e for e in events if e["rule"] == "max_error_rate" and e["notify"]]

    try:
        first = PerformanceIntegrationService(redis_url=real_server.url, prefix=prefix, alert_callback=received.append)
        first.start()  # the group starts here: what fires from now on is delivered
        wait_until(lambda: first.refresh() and "parser" in first.get_components(), timeout_s=20, what="the faulty process in the registry")
        inject("errors")
        wait_until(lambda: any(a.rule == "max_error_rate" and a.transition == "firing" for a in received), timeout_s=20, what="the firing alert")
        first.stop()  # the subscriber restarts: a new service, the same group
        second = PerformanceIntegrationService(redis_url=real_server.url, prefix=prefix, alert_callback=received.append)
        second.start()
        inject("normal")
        wait_until(lambda: any(a.rule == "max_error_rate" and a.transition == "resolved" for a in received), timeout_s=30, what="the resolved alert")
        second.stop()
    finally:
        faulty.communicate(timeout=10)
    delivered = [a.event_id for a in received if a.rule == "max_error_rate"]
    assert len(delivered) == len(set(delivered))  # once each, across the restart
    assert delivered == [e["event_id"] for e in paging_events()]  # every paging transition, in order
    client.close()


def test_a_fault_upstream_marks_the_chain_impacted_and_the_registry_keeps_it(monitored: dict[str, str], real_server: EmbeddedServer, prefix: str) -> None:
    with PerformanceIntegrationService(redis_url=real_server.url, prefix=prefix, refresh_interval_s=0.2, sample_system=False) as service:
        service.register_component("A")
        service.register_component("B", depends_on=["A"])
        service.register_component("C", depends_on=["B"])

        def beat(a_fails: bool) -> None:
            for component in "ABC":
                for i in range(20):
                    service.track_operation(component=component, operation_name="step", duration_ms=1.0, success=not (a_fails and component == "A" and i % 2))

        def impacted() -> dict[str, Any]:
            service.refresh()
            return {name: [c["component"] for c in body["impacted_by"]] for name, body in service.get_health_status()["components"].items()}

        deadline = time.monotonic() + 30
        while impacted() != {"A": [], "B": ["A"], "C": ["A"]}:  # A at 50 % errors goes critical
            assert time.monotonic() < deadline, f"B and C impacted by A: {impacted()}"
            beat(a_fails=True)
            time.sleep(0.1)  # the workload's pace
        assert service.get_health_status()["root_causes"] == [{"component": "A", "status": "critical", "impacts": ["B", "C"]}]
        deadline = time.monotonic() + 40
        while impacted() != {"A": [], "B": [], "C": []}:
            assert time.monotonic() < deadline, f"the impact to clear when A recovers: {impacted()}"
            beat(a_fails=False)
            time.sleep(0.1)
        assert service.get_components()["C"]["depends_on"] == ["B"] and service.get_components()["A"]["dependents"] == ["B"]
        listed = subprocess.run([*PIPEPULSE, "components"], env=monitored, capture_output=True, text=True, timeout=30)
        assert listed.returncode == 0, listed.stderr
        header, *rows = listed.stdout.splitlines()
        assert header.split()[:2] == ["component", "status"]
        assert [row.split()[0] for row in rows] == ["A", "B", "C"] and rows[2].split()[-2:] == ["B", "-"]  # C depends on B; nothing on C
        as_json = json.loads(subprocess.run([*PIPEPULSE, "components", "--json"], env=monitored, capture_output=True, text=True, timeout=30).stdout)
        assert as_json["B"]["depends_on"] == ["A"] and as_json["B"]["status"] == "active"
