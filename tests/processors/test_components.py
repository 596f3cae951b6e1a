"""The component registry, calls in progress and the dependency graph, fed events through the processors."""

from __future__ import annotations

from typing import Any

from processors.dependencies import impact
from processors.stats import StatsProcessor

from tests.processors.alerting import alert_events, health_snapshots, monitor, run, spread
from tests.processors.helpers import T0, batch, in_progress, items, latest_values, lifecycle, op, tick


def registry_after(entries: list[Any], processor: StatsProcessor | None = None) -> dict[str, Any]:
    return latest_values((processor or StatsProcessor()).apply(items(entries)), "components")


# -- the registry


def test_a_component_appears_on_its_first_event_with_its_processes_configuration_and_dependencies() -> None:
    entries = [
        batch([lifecycle(T0 + 0.5, "started", {"workers": 4}, depends_on=["parser", "cache"]), op(T0 + 0.6)], seq=0, producer="e1", component="extractor", pid=11, host="h1"),
        batch([op(T0 + 0.7)], seq=0, producer="e2", component="extractor", pid=12, host="h2"),
        batch([op(T0 + 0.8)], seq=0, producer="p1", component="parser", pid=13, host="h1"),
        tick(T0 + 1),
    ]
    registry = registry_after(entries)
    extractor = registry["extractor"]
    assert extractor["status"] == "active"
    assert extractor["registered_at_s"] == T0 + 0.5 and extractor["last_seen_s"] == T0 + 0.7
    assert [(p["pid"], p["host"]) for p in extractor["processes"]] == [(11, "h1"), (12, "h2")]
    assert extractor["hosts"] == ["h1", "h2"]
    assert extractor["config"] == {"workers": 4}
    assert extractor["depends_on"] == ["cache", "parser"]
    assert registry["parser"]["dependents"] == ["extractor"]
    assert registry["parser"]["depends_on"] == []


def test_a_silent_component_goes_stale_and_a_stopped_one_says_so() -> None:
    entries = [
        batch([op(T0 + 0.5)], seq=0, producer="p1", component="parser"),
        batch([op(T0 + 0.5)], seq=0, producer="w1", component="watcher"),
        batch([lifecycle(T0 + 0.6, "stopped")], seq=1, producer="w1", component="watcher"),
        *[batch([op(T0 + s + 0.5)], seq=s, producer="c1", component="cache") for s in range(0, 25)],
        tick(T0 + 25),
    ]
    early = registry_after(entries)
    assert (early["parser"]["status"], early["watcher"]["status"], early["cache"]["status"]) == ("active", "stopped", "active")
    late = registry_after([*entries, *[batch([op(T0 + s + 0.5)], seq=s, producer="c1", component="cache") for s in range(25, 45)], tick(T0 + 45)])
    assert late["parser"]["status"] == "stale" and late["parser"]["processes"][0]["stale"]
    assert late["cache"]["status"] == "active"


def test_one_process_of_a_pool_stopping_does_not_stop_the_component() -> None:
    processor = StatsProcessor()
    entries = [
        batch([op(T0 + 0.5)], seq=0, producer="e1", component="extractor", pid=1),
        batch([op(T0 + 0.5)], seq=0, producer="e2", component="extractor", pid=2),
        batch([lifecycle(T0 + 0.6, "stopped")], seq=1, producer="e1", component="extractor", pid=1),
        tick(T0 + 1),
    ]
    registry = registry_after(entries, processor)
    assert registry["extractor"]["status"] == "active"
    assert [(p["pid"], p["stopped"]) for p in registry["extractor"]["processes"]] == [(1, True), (2, False)]
    last = registry_after([batch([lifecycle(T0 + 1.5, "stopped")], seq=1, producer="e2", component="extractor", pid=2), tick(T0 + 2)], processor)
    assert last["extractor"]["status"] == "stopped"


def test_a_component_that_stopped_cleanly_is_no_root_cause() -> None:
    def series(second: int) -> dict[str, list[list[Any]]]:
        rows: dict[str, list[list[Any]]] = {"B": spread(second, 20, op)}
        if second == 0:
            rows["B"].insert(0, lifecycle(T0 + 0.01, "started", depends_on=["A"]))
            rows["A"] = [op(T0 + 0.5), lifecycle(T0 + 0.6, "stopped")]
        return rows

    final = health_snapshots(run(series, 45))[-1]
    assert final["components"]["A"]["status"] == "unknown"  # silent: no score, as any stale component
    assert final["components"]["B"]["impacted_by"] == [] and final["root_causes"] == []


def test_dependencies_survive_a_restart_of_the_component_and_of_the_processor_and_a_declaration_replaces_them() -> None:
    first = StatsProcessor()
    first.apply(items([batch([lifecycle(T0 + 0.5, "started", depends_on=["parser"])], seq=0, producer="old", component="extractor"), tick(T0 + 1)]))
    second = StatsProcessor()
    second.restore(first.snapshot())  # the processor restarted
    restarted = [batch([lifecycle(T0 + 2.5, "started"), op(T0 + 2.6)], seq=0, producer="new", component="extractor", pid=200), tick(T0 + 3)]  # it restarted, declaring nothing
    registry = registry_after(restarted, second)
    assert registry["extractor"]["depends_on"] == ["parser"]
    assert registry["extractor"]["registered_at_s"] == T0 + 0.5
    declared = registry_after([batch([lifecycle(T0 + 3.5, "registered", depends_on=["cache", "extractor"])], seq=1, producer="new", component="extractor", pid=200), tick(T0 + 4)], second)
    assert declared["extractor"]["depends_on"] == ["cache"]  # replaced; a component never depends on itself


# -- calls in progress


def test_calls_in_progress_add_up_over_live_processes_and_leave_with_them() -> None:
    processor = StatsProcessor()
    feed = [
        batch([in_progress(T0 + 0.5, "extract", 3, 5), in_progress(T0 + 0.5, "resolve", 1)], seq=0, producer="a", component="extractor"),
        batch([in_progress(T0 + 0.6, "extract", 2, 2)], seq=0, producer="b", component="extractor", pid=101),
        batch([in_progress(T0 + 0.4, "extract", 9, 9)], seq=1, producer="b", component="extractor", pid=101),  # older: ignored
        tick(T0 + 1),
    ]
    live = latest_values(processor.apply(items(feed)), "stats_live")
    concurrency = live["extractor"]["10s"]["in_progress"]
    assert concurrency == {"running": 6, "peak": 8, "operations": {"extract": 5, "resolve": 1}}
    assert live["__pipeline__"]["10s"]["pipeline"]["in_progress"] == {"running": 6, "peak": 8}
    stopped = latest_values(processor.apply(items([batch([lifecycle(T0 + 1.5, "stopped")], seq=1, producer="a", component="extractor"), tick(T0 + 2)])), "stats_live")
    assert stopped["extractor"]["10s"]["in_progress"]["running"] == 2
    idle = latest_values(processor.apply(items([batch([in_progress(T0 + 2.5, "extract", 0, 0)], seq=2, producer="b", component="extractor", pid=101), tick(T0 + 3)])), "stats_live")
    assert idle["extractor"]["10s"]["in_progress"] == {"running": 0, "peak": 0, "operations": {}}


def test_a_silent_process_stops_counting_as_busy() -> None:
    processor = StatsProcessor()
    processor.apply(items([batch([in_progress(T0 + 0.5, "extract", 4)], seq=0, producer="a", component="extractor"), tick(T0 + 1)]))
    later = latest_values(processor.apply(items([batch([op(T0 + 40.5)], seq=0, producer="b", component="extractor", pid=2), tick(T0 + 41)])), "stats_live")
    assert later["extractor"]["10s"]["in_progress"]["running"] == 0


# -- the dependency graph


def test_impact_names_the_root_cause_furthest_upstream() -> None:
    chain = {"b": ["a"], "c": ["b"]}
    assert impact({"a": "critical", "b": "critical", "c": "healthy"}, chain) == {
        "b": [{"component": "a", "status": "critical", "path": ["a"]}],
        "c": [{"component": "a", "status": "critical", "path": ["b", "a"]}],
    }
    assert impact({"a": "unknown", "b": "healthy", "c": "warning"}, chain)["c"][0]["component"] == "a"  # stale is a cause
    assert impact({"a": "warning", "b": "healthy", "c": "healthy"}, chain) == {}
    assert impact({"b": "healthy", "c": "healthy"}, chain) == {}  # a dependency never seen is no cause
    cycle = impact({"x": "critical", "y": "critical"}, {"x": ["y"], "y": ["x"]})
    assert cycle == {"x": [{"component": "y", "status": "critical", "path": ["y"]}], "y": [{"component": "x", "status": "critical", "path": ["x"]}]}


def chain_workload(fault: range, downstream_fault: range) -> Any:
    """A -> B -> C: A fails throughout `fault`; B, which depends on A, fails throughout `downstream_fault`."""

    def series(second: int) -> dict[str, list[list[Any]]]:
        rows: dict[str, list[list[Any]]] = {}
        for name, failing, depends_on in (("A", second in fault, None), ("B", second in downstream_fault, ["A"]), ("C", False, ["B"])):
            rows[name] = spread(second, 60, op, ok=not failing, error_type="Upstream")
            if second == 0:
                rows[name].insert(0, lifecycle(T0 + 0.01, "started", depends_on=depends_on))
        return rows

    return series


def test_a_fault_in_a_marks_b_and_c_impacted_by_a_names_it_in_b_s_alerts_and_clears_when_a_recovers() -> None:
    processor = monitor()
    outputs = run(chain_workload(fault=range(5, 25), downstream_fault=range(8, 25)), 60, processor)
    snapshots = health_snapshots(outputs)
    during = next(s for s in snapshots if s["components"]["A"]["status"] == "critical" and s["components"]["B"]["status"] == "critical")
    assert [c["component"] for c in during["components"]["B"]["impacted_by"]] == ["A"]
    assert during["components"]["C"]["impacted_by"] == [{"component": "A", "status": "critical", "path": ["B", "A"]}]
    assert during["components"]["A"]["impacted_by"] == []
    assert during["root_causes"] == [{"component": "A", "status": "critical", "impacts": ["B", "C"]}]
    b_fired = [e for e in alert_events(outputs, "max_error_rate") if e["labels"]["component"] == "B" and e["transition"] == "firing"]
    assert b_fired and b_fired[0]["cause"] == "upstream A is critical"
    assert "upstream A is critical" in b_fired[0]["message"]
    a_fired = [e for e in alert_events(outputs, "max_error_rate") if e["labels"]["component"] == "A" and e["transition"] == "firing"]
    assert a_fired and a_fired[0]["cause"] is None
    final = snapshots[-1]
    assert all(body["impacted_by"] == [] for body in final["components"].values()) and final["root_causes"] == []
