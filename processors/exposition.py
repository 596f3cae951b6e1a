"""Prometheus text exposition of the derived snapshots, produced with prometheus_client.

A custom collector reads `api.overview` at each scrape, so `/metrics` shows the
processors' latest windows, never a recomputation. Names follow Prometheus
conventions (base units: seconds, bytes, ratios; `_total` for counters), and
labels are bounded: components and processes are capped by the statistics
processor, hosts are those that sampled in the latest window, severities,
states and directions are fixed sets.
"""

from __future__ import annotations

from typing import Any, Callable, Iterator, Mapping

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import CollectorRegistry

QUANTILES = (("0.5", "p50"), ("0.9", "p90"), ("0.95", "p95"), ("0.99", "p99"))
# Direction label -> the prefix of the host's network rates in the statistics (`{prefix}_bytes_per_s`, `{prefix}_packets_per_s`).
NETWORK_DIRECTIONS = (("sent", "net_sent"), ("received", "net_recv"))
RUNTIME_COUNTERS = (("dead_letters_total", "Entries sent to the dead-letter stream."), ("missing_batches_total", "Batches lost before processing (sequence gaps)."))


class SnapshotCollector:
    """Every family from one overview read (`read` returns `api.overview(...)`)."""

    def __init__(self, read: Callable[[], Mapping[str, Any]]) -> None:
        self._read = read

    def collect(self) -> Iterator[Metric]:
        view = self._read()
        yield from _health(view.get("health"))
        yield from _components(view.get("components", {}))
        yield from _processes(view.get("stats", {}))
        yield from _hosts(view.get("stats", {}))
        yield from _alerts(view.get("alerts", []))
        yield from _runtime(view.get("runtime", {}))
        optimizer = view.get("optimizer") or {}
        mode = GaugeMetricFamily("pipepulse_optimizer_mode", "1 for the optimizer's current mode.", labels=["mode"])
        for name in ("enabled", "dry_run", "disabled"):
            mode.add_metric([name], 1.0 if optimizer.get("mode") == name else 0.0)
        yield mode
        advice = GaugeMetricFamily("pipepulse_recommendations_active", "Recommendations in force, by kind.", labels=["kind"])
        kinds: dict[str, int] = {}
        for rec in view.get("recommendations", []):
            kinds[rec["kind"]] = kinds.get(rec["kind"], 0) + 1
        for kind, count in sorted(kinds.items()):
            advice.add_metric([kind], count)
        yield advice


def registry(read: Callable[[], Mapping[str, Any]]) -> CollectorRegistry:
    """A registry holding only the snapshot collector (no process metrics of the web server itself)."""
    found = CollectorRegistry(auto_describe=False)
    found.register(SnapshotCollector(read))
    return found


def _health(health: Mapping[str, Any] | None) -> Iterator[Metric]:
    score = GaugeMetricFamily("pipepulse_health_score", "The pipeline's health score, 0-100.")
    components = GaugeMetricFamily("pipepulse_component_health_score", "Each component's health score, 0-100 (absent when stale).", labels=["component"])
    if health is not None:
        score.add_metric([], health["score"])
        for name, body in sorted(health.get("components", {}).items()):
            if body.get("score") is not None:
                components.add_metric([name], body["score"])
    yield score
    yield components


def _components(rows: Mapping[str, Mapping[str, Any]]) -> Iterator[Metric]:
    labels = ["component"]
    rate = GaugeMetricFamily("pipepulse_operations_per_second", "Operations per second over the latest window (RED: rate).", labels=labels)
    errors = GaugeMetricFamily("pipepulse_error_ratio", "Failed operations over all operations in the latest window (RED: errors).", labels=labels)
    latency = GaugeMetricFamily("pipepulse_operation_duration_seconds", "Operation duration quantiles over the latest window (RED: duration).", labels=[*labels, "quantile"])
    hits = GaugeMetricFamily("pipepulse_cache_hit_ratio", "Cache hits over lookups in the latest window.", labels=labels)
    efficiency = GaugeMetricFamily("pipepulse_efficiency_score", "The component's efficiency score, 0-100.", labels=labels)
    running = GaugeMetricFamily("pipepulse_operations_in_progress", "Calls in progress at the end of the latest window, summed over the live processes.", labels=labels)
    for name, row in sorted(rows.items()):
        component = "" if name == "(pipeline)" else name  # the pipeline-wide series has an empty component label
        _add(rate, [component], row.get("rate_per_s"))
        _add(errors, [component], row.get("error_rate"))
        for quantile, key in QUANTILES:
            value = row.get("latency_ms", {}).get(key)
            _add(latency, [component, quantile], None if value is None else value / 1000)
        _add(hits, [component], row.get("cache", {}).get("hit_rate"))
        _add(efficiency, [component], row.get("efficiency_score"))
        _add(running, [component], row.get("in_progress", {}).get("running"))
    yield from (rate, errors, latency, hits, efficiency, running)


def _processes(latest: Mapping[str, Mapping[str, Any]]) -> Iterator[Metric]:
    """USE for the pipeline's processes: CPU utilisation and resident memory, per component and process."""
    labels = ["component", "process"]
    cpu = GaugeMetricFamily("pipepulse_process_cpu_ratio", "CPU used by the process, in cores (1.0 = one core busy).", labels=labels)
    rss = GaugeMetricFamily("pipepulse_process_resident_memory_bytes", "Resident memory of the process.", labels=labels)
    for component, views in sorted(latest.items()):
        for view in views.values():
            for process, body in sorted(view.get("processes", {}).items()):
                _add(cpu, [component, process], None if body.get("cpu_percent") is None else body["cpu_percent"] / 100)
                _add(rss, [component, process], body.get("rss_bytes"))
    yield from (cpu, rss)


def _hosts(latest: Mapping[str, Mapping[str, Any]]) -> Iterator[Metric]:
    """USE for the hosts the pipeline runs on: network traffic, from the cumulative counters of host samples.

    A host without a rate (no network counters, one sample, or a counter reset) has no series rather than 0.
    """
    labels = ["host", "direction"]
    traffic = GaugeMetricFamily("pipepulse_host_network_bytes_per_second", "Bytes per second over all network interfaces of the host in the latest window, by direction (sent, received).", labels=labels)
    packets = GaugeMetricFamily("pipepulse_host_network_packets_per_second", "Packets per second over all network interfaces of the host in the latest window, by direction (sent, received).", labels=labels)
    for views in latest.values():
        for view in views.values():
            for host, body in sorted(view.get("hosts", {}).items()):  # only the pipeline-wide field carries hosts
                for direction, prefix in NETWORK_DIRECTIONS:
                    _add(traffic, [host, direction], body.get(f"{prefix}_bytes_per_s"))
                    _add(packets, [host, direction], body.get(f"{prefix}_packets_per_s"))
    yield from (traffic, packets)


def _alerts(active: list[Mapping[str, Any]]) -> Iterator[Metric]:
    family = GaugeMetricFamily("pipepulse_alerts_active", "Active alerts by severity and state.", labels=["severity", "state"])
    counts: dict[tuple[str, str], int] = {}
    for alert in active:
        key = (alert["severity"], alert["state"])
        counts[key] = counts.get(key, 0) + 1
    for (severity, state), count in sorted(counts.items()):
        family.add_metric([severity, state], count)
    yield family


def _runtime(reports: Mapping[str, Mapping[str, Any]]) -> Iterator[Metric]:
    """USE for the processors themselves: utilisation (events/s), saturation (lag), errors (dead letters, gaps)."""
    lag = GaugeMetricFamily("pipepulse_processor_lag_entries", "Entries not yet processed (saturation): on Redis, not yet read by the processor's group; under Faust, ordered records not yet folded.", labels=["processor"])
    rate = GaugeMetricFamily("pipepulse_processor_events_per_second", "Events the processor folded per second.", labels=["processor"])
    counters = {name: CounterMetricFamily(f"pipepulse_processor_{name.removesuffix('_total')}", text, labels=["processor"]) for name, text in RUNTIME_COUNTERS}
    for processor, report in sorted(reports.items()):
        _add(lag, [processor], report.get("lag_entries"))
        _add(rate, [processor], report.get("events_per_s"))
        for name, family in counters.items():
            _add(family, [processor], report.get(name))
    yield from (lag, rate, *counters.values())


def _add(family: GaugeMetricFamily | CounterMetricFamily, labels: list[str], value: float | None) -> None:
    if value is not None:
        family.add_metric(labels, float(value))
