"""Named metrics read out of a statistics document, shared by alert rules, health and forecasts.

A statistics document is what `StatsProcessor` renders for a window (see
processors.stats). Each metric comes with its sample count, so a rule can
require enough data (`min_count`) before it judges.
"""

from __future__ import annotations

from typing import Any, Callable, Final, Iterator, Mapping

from schemas.names import PIPELINE_FIELD as PIPELINE_SERIES

Labels = dict[str, str]
SERIES_LABELS: Final = ("component", "operation")  # what identifies a series, in this order
# The metrics forecast for the pipeline and every component (what trend rules can watch).
FORECAST_METRICS: Final = ("efficiency", "throughput_per_s", "latency_p99_ms", "rss_bytes", "error_rate")
Reading = tuple[float | None, int]  # (value or None for "no data", samples behind it)


def _stat(*path: str) -> Callable[[Mapping[str, Any], Mapping[str, Any]], Reading]:
    def read(stats: Mapping[str, Any], processes: Mapping[str, Any]) -> Reading:
        value: Any = stats
        for key in path:
            value = value.get(key) if value is not None else None
        return value, stats.get("count", 0)

    return read


def _cache_hit_rate(stats: Mapping[str, Any], processes: Mapping[str, Any]) -> Reading:
    cache = stats.get("cache", {})
    return cache.get("hit_rate"), cache.get("hits", 0) + cache.get("misses", 0)


def _worst_process(field: str) -> Callable[[Mapping[str, Any], Mapping[str, Any]], Reading]:
    """The worst process: limits such as memory apply to each process, not to their sum."""

    def read(stats: Mapping[str, Any], processes: Mapping[str, Any]) -> Reading:
        values = [p[field] for p in processes.values() if p.get(field) is not None]
        return (max(values) if values else None), len(values)

    return read


EXTRACTORS: Final[dict[str, Callable[[Mapping[str, Any], Mapping[str, Any]], Reading]]] = {
    "error_rate": _stat("error_rate"),
    "success_rate": _stat("success_rate"),
    "latency_mean_ms": _stat("latency_ms", "mean"),
    "latency_p50_ms": _stat("latency_ms", "p50"),
    "latency_p90_ms": _stat("latency_ms", "p90"),
    "latency_p95_ms": _stat("latency_ms", "p95"),
    "latency_p99_ms": _stat("latency_ms", "p99"),
    "latency_max_ms": _stat("latency_ms", "max"),
    "cache_hit_rate": _cache_hit_rate,
    "efficiency": _stat("efficiency_score"),
    "throughput_per_s": _stat("rate_per_s"),
    "rss_bytes": _worst_process("rss_bytes"),
    "cpu_percent": _worst_process("cpu_percent"),
}


def series(document: Mapping[str, Any], scope: str) -> Iterator[tuple[Labels, Mapping[str, Any], Mapping[str, Any]]]:
    """(labels, stats, processes) of every series of a scope in a document, in sorted order (replays must agree)."""
    components = document.get("components", {})
    if scope == "pipeline":
        processes = {f"{c}/{p}": body for c in sorted(components) for p, body in components[c].get("processes", {}).items()}
        yield {}, document.get("pipeline", {}), processes
        return
    for component in sorted(components):
        body = components[component]
        if scope == "component":
            yield {"component": component}, body.get("stats", {}), body.get("processes", {})
        else:
            operations = body.get("operations", {})
            for operation in sorted(operations):
                yield {"component": component, "operation": operation}, operations[operation], {}


def reading(metric: str, stats: Mapping[str, Any], processes: Mapping[str, Any]) -> Reading:
    return EXTRACTORS[metric](stats, processes)


def series_name(labels: Mapping[str, str]) -> str:
    """The forecaster's name for a pipeline or component series."""
    return labels.get("component", PIPELINE_SERIES)
