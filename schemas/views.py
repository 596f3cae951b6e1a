"""Views of the derived snapshots in the integration vocabulary: health status, dashboard data, the registry.

The processors write the snapshots (see `schemas.names`); this module only reads
and reshapes them, so the JSON API (`/api/dashboard`, `/api/components`) and the
client-side `PerformanceIntegrationService` give the same answer from the same
keys. `read` takes any redis-py style client (sync), so neither side's
connection handling leaks into the other.
"""

from __future__ import annotations

import json
from typing import Any, Final, Mapping, Protocol, Sequence

from schemas.names import PIPELINE_FIELD, Names

# The call-detection pipeline's domain counters (Emitter.count or an operation's counters).
CALLS_COUNTER: Final = "calls_detected"
FILES_COUNTER: Final = "files_processed"
MB: Final = 1024 * 1024


class SnapshotClient(Protocol):
    """What `read` needs of a client: redis.Redis and fakeredis.FakeRedis have it."""

    def hgetall(self, name: str) -> Any: ...

    def xrevrange(self, name: str, max: str = "+", min: str = "-", count: int | None = None) -> Any: ...


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _table(client: SnapshotClient, key: str) -> dict[str, Any]:
    return {_text(field): json.loads(value) for field, value in client.hgetall(key).items()}


def _recent(client: SnapshotClient, key: str, count: int, field: str = "json") -> list[Any]:
    """A field (JSON) of a derived stream's newest `count` entries, oldest first; entries without it are skipped."""
    entries = client.xrevrange(key, count=count)
    found = [fields.get(field.encode(), fields.get(field)) for _, fields in reversed(entries)]
    return [json.loads(text) for text in found if text is not None]


def read(client: SnapshotClient, names: Names, history: int = 60) -> dict[str, Any]:
    """The snapshots the views are made of: health, live statistics, active alerts, registry; and, when `history`
    is not 0, the newest `history` closed windows and health snapshots (for charts)."""
    snapshots = {
        "health": _table(client, names.latest("health")).get("current"),
        "live": _table(client, names.latest("stats_live")),
        "alerts": sorted(_table(client, names.latest("alerts")).values(), key=lambda a: a["fingerprint"]),
        "registry": registry(client, names),
    }
    if history:
        # Only the windows' pipeline-wide part: decoding every component of 60 windows would cost the host real CPU.
        windows = _recent(client, names.stream("stats"), history, "pipeline")
        snapshots.update(windows=windows, health_history=_recent(client, names.stream("health"), history))
    return snapshots


def registry(client: SnapshotClient, names: Names) -> dict[str, Any]:
    """The component registry: one entry per component (status, registration, processes, hosts, configuration, dependencies)."""
    return _table(client, names.latest("components"))


def health_status(snapshots: Mapping[str, Any]) -> dict[str, Any]:
    """Overall score and level, each component's status (with what impacts it), the root causes; None figures when no snapshot yet."""
    health = snapshots.get("health") or {}
    components = {
        name: {"status": status, "score": health.get("components", {}).get(name, {}).get("score"), "impacted_by": health.get("components", {}).get(name, {}).get("impacted_by", [])}
        for name, status in component_health(snapshots).items()
    }
    return {
        "overall_score": health.get("score"),
        "level": health.get("level", "unknown"),
        "at_s": health.get("at_s"),
        "factors": health.get("factors", {}),
        "components": components,
        "root_causes": health.get("root_causes", []),
        "active_alerts": len(snapshots.get("alerts", [])),
    }


def component_health(snapshots: Mapping[str, Any]) -> dict[str, str]:
    """healthy, warning, critical or unknown per component: the health snapshot's light, unknown for one it has not judged."""
    judged = (snapshots.get("health") or {}).get("components", {})
    names = sorted(set(judged) | set(snapshots.get("registry", {})))
    return {name: judged.get(name, {}).get("status", "unknown") for name in names}


def _processes(live: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return [process for field, views in sorted(live.items()) if field != PIPELINE_FIELD for process in views.get("10s", {}).get("processes", {}).values()]


def _counter_rate(stats: Mapping[str, Any], name: str) -> float:
    return float(stats.get("counters", {}).get(name, {}).get("rate_per_s", 0.0))


def current_metrics(snapshots: Mapping[str, Any]) -> dict[str, Any]:
    """The pipeline over the last 10 s: rates, ratios, resources summed over its processes, alerts in force."""
    live = snapshots.get("live", {})
    pipeline = live.get(PIPELINE_FIELD, {}).get("10s", {}).get("pipeline", {})
    processes = _processes(live)
    health = snapshots.get("health") or {}
    return {
        "pipeline_efficiency": pipeline.get("efficiency_score"),
        "calls_per_second": _counter_rate(pipeline, CALLS_COUNTER),
        "files_per_second": _counter_rate(pipeline, FILES_COUNTER),
        "operations_per_second": pipeline.get("rate_per_s", 0.0),
        "operations_in_progress": pipeline.get("in_progress", {}).get("running", 0),
        "memory_usage_mb": sum(p.get("rss_bytes") or 0 for p in processes) / MB,
        "cpu_percent": sum(p.get("cpu_percent") or 0.0 for p in processes),
        "cache_hit_rate": pipeline.get("cache", {}).get("hit_rate"),
        "error_rate": pipeline.get("error_rate"),
        "active_alerts": len(snapshots.get("alerts", [])),
        "health_score": health.get("score"),
        "at_s": live.get(PIPELINE_FIELD, {}).get("10s", {}).get("end_s"),
    }


def charts(windows: Sequence[Mapping[str, Any]], health_history: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Time series of the closed windows (x: window end, epoch seconds) and of the health score."""
    pipelines = [window.get("pipeline", {}) for window in windows]
    return {
        "timestamps": [window["end_s"] for window in windows],
        "operations_per_second": [p.get("rate_per_s") for p in pipelines],
        "calls_per_second": [_counter_rate(p, CALLS_COUNTER) for p in pipelines],
        "files_per_second": [_counter_rate(p, FILES_COUNTER) for p in pipelines],
        "error_rate": [p.get("error_rate") for p in pipelines],
        "cache_hit_rate": [p.get("cache", {}).get("hit_rate") for p in pipelines],
        "pipeline_efficiency": [p.get("efficiency_score") for p in pipelines],
        "health": {"timestamps": [h["at_s"] for h in health_history], "score": [h["score"] for h in health_history]},
    }


def dashboard_data(snapshots: Mapping[str, Any]) -> dict[str, Any]:
    """`current_metrics`, `charts` and `component_health`, plus the active alerts and the registry."""
    return {
        "current_metrics": current_metrics(snapshots),
        "charts": charts(snapshots.get("windows", []), snapshots.get("health_history", [])),
        "component_health": component_health(snapshots),
        "alerts": list(snapshots.get("alerts", [])),
        "components": dict(snapshots.get("registry", {})),
    }
