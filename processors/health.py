"""The health score: 0-100 from four weighted factors minus deductions for the active alerts.

Cache performance 30, success rate 25, processing speed 25 (Apdex), memory
efficiency 20. Each factor earns its points linearly between a "bad" and a
"good" value. Deductions are computed from the evaluator's own active
alerts, so the score never contradicts the alert list: a critical alert
costs more than the 20 points that separate "excellent" from "good".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final, Iterable, Mapping

from processors import dependencies, metrics
from processors.alert_state import Alert
from processors.contract import LatestOutput, Output, PartKey, Parts, StreamOutput, to_json

LEVELS: Final = ((80.0, "excellent"), (60.0, "good"), (40.0, "warning"), (0.0, "critical"))


@dataclass(frozen=True, slots=True, kw_only=True)
class Factor:
    weight: float
    bad: float  # earns nothing at or past this
    good: float  # earns the full weight at or past this


@dataclass(frozen=True, slots=True, kw_only=True)
class HealthSettings:
    cache: Factor = Factor(weight=30.0, bad=0.40, good=0.90)  # hit rate
    success: Factor = Factor(weight=25.0, bad=0.90, good=0.99)  # success rate
    speed: Factor = Factor(weight=25.0, bad=0.50, good=0.94)  # Apdex (0.94 is "excellent" on its own scale)
    memory: Factor = Factor(weight=20.0, bad=1.0, good=0.5)  # worst process RSS as a share of memory_limit_bytes
    memory_limit_bytes: float = 2 * 1024**3
    deductions: Mapping[str, float] = field(default_factory=lambda: {"warning": 5.0, "error": 15.0, "critical": 25.0})


def level(score: float) -> str:
    return next(name for floor, name in LEVELS if score >= floor)


def _points(factor: Factor, value: float | None) -> float:
    """No data earns the full weight (a pipeline without a cache is not unhealthy), and the breakdown says so."""
    if value is None:
        return factor.weight
    share = (value - factor.bad) / (factor.good - factor.bad)
    return round(factor.weight * min(max(share, 0.0), 1.0), 3)


class HealthScorer:
    name = "health"

    def __init__(self, settings: HealthSettings = HealthSettings()) -> None:
        self.settings = settings
        self._remember(None)
        self._changed = False

    def score(self, stats: Mapping[str, Any], processes: Mapping[str, Any], alerts: Iterable[Alert]) -> dict[str, Any]:
        """One score with its breakdown, for the pipeline or a component."""
        settings = self.settings
        rss, _ = metrics.reading("rss_bytes", stats, processes)
        readings = {
            "cache": metrics.reading("cache_hit_rate", stats, processes)[0],
            "success": stats.get("success_rate"),
            "speed": stats.get("apdex"),
            "memory": None if rss is None else rss / settings.memory_limit_bytes,
        }
        factors = {name: getattr(settings, name) for name in readings}
        breakdown = {name: {"points": _points(factors[name], value), "of": factors[name].weight, "value": value} for name, value in readings.items()}
        firing = [a for a in alerts if a.is_firing]
        deductions: list[dict[str, Any]] = [{"fingerprint": a.fingerprint, "rule": a.rule, "severity": a.severity, "points": settings.deductions.get(a.severity, 0.0)} for a in firing]
        earned = sum(float(part["points"]) for part in breakdown.values())
        total = round(max(0.0, earned - sum(float(d["points"]) for d in deductions)), 3)
        return {"score": total, "level": level(total), "factors": breakdown, "deductions": deductions}

    def assess(self, now_s: float, document: Mapping[str, Any], active: list[Alert], force: bool) -> list[Output]:
        """A snapshot from the live statistics and the active alerts; emitted when forced or when anything moved."""
        (_, stats, processes), = metrics.series(document, "pipeline")
        snapshot = self.score(stats, processes, active)
        components: dict[str, Any] = {}
        for labels, component_stats, component_processes in metrics.series(document, "component"):
            name = labels["component"]
            own = [a for a in active if a.labels.get("component") == name]
            body = self.score(component_stats, component_processes, own)
            body["status"] = _status(document["components"][name], own, body["score"])
            if body["status"] == "unknown":  # stale: no score at all, never one made of its last values or of "no data"
                body.update(score=None, level="unknown")
            components[name] = body
        root_causes = _propagate(components, document["components"])
        firing = len([a for a in active if a.is_firing])
        snapshot.update(at_s=now_s, components=components, root_causes=root_causes, active_alerts=len(active), firing_alerts=firing)
        if self._previous is not None and not force and _gist(snapshot) == _gist(self._previous):
            return []
        snapshot["moved"] = _moved(self._previous, snapshot)
        self._remember(snapshot)
        self._changed = True
        text = to_json(snapshot)
        return [StreamOutput("health", {"at_s": str(now_s), "json": text}), LatestOutput("health", "current", text)]

    def causes(self) -> Mapping[str, str]:
        """Each impacted component's upstream cause in the newest snapshot, as alerts on it name it."""
        return self._causes

    def _remember(self, snapshot: dict[str, Any] | None) -> None:
        self._previous = snapshot
        components = (snapshot or {}).get("components", {})
        # Derived, not state: alerts read it on every batch, so it is made once per snapshot.
        self._causes = {name: dependencies.cause_text(body["impacted_by"]) for name, body in components.items() if body.get("impacted_by")}

    # -- checkpoint: the previous snapshot, which "moved" is computed against

    def take_changes(self) -> tuple[Parts, set[PartKey]]:
        changed, self._changed = self._changed, False
        return ({("previous",): self._previous} if changed else {}), set()

    def snapshot(self) -> Parts:
        return {("previous",): self._previous} if self._previous is not None else {}

    def restore(self, parts: Mapping[PartKey, Any]) -> None:
        self._remember(parts.get(("previous",)))
        self._changed = False


def _propagate(components: dict[str, dict[str, Any]], facts: Mapping[str, Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Mark the components impacted by a failing one upstream (with the cause); return the root causes and what each impacts."""
    # A component that stopped cleanly is not failing: its silence is no one's root cause.
    statuses = {name: "stopped" if facts[name].get("state") == "stopped" else body["status"] for name, body in components.items()}
    impacted = dependencies.impact(statuses, {name: facts[name].get("depends_on", []) for name in components})
    impacts: dict[str, list[str]] = {}
    for name, body in components.items():
        body["impacted_by"] = impacted.get(name, [])
        for cause in body["impacted_by"]:
            impacts.setdefault(cause["component"], []).append(name)
    return [{"component": root, "status": components[root]["status"], "impacts": names} for root, names in sorted(impacts.items())]


def _gist(snapshot: Mapping[str, Any]) -> tuple[Any, ...]:
    """What makes a snapshot worth sending between window closes: a whole point, a level, a status, an impact, an alert."""
    statuses = tuple(
        (name, body["status"], body["score"] if body["score"] is None else round(body["score"]), tuple(c["component"] for c in body.get("impacted_by", ())))
        for name, body in sorted(snapshot["components"].items())
    )
    deductions = tuple((d["fingerprint"], d["severity"]) for d in snapshot["deductions"])
    return round(snapshot["score"]), snapshot["level"], statuses, deductions, snapshot["active_alerts"]


def _status(body: Mapping[str, Any], alerts: list[Alert], score: float) -> str:
    """Traffic light: unknown when stale (never its last value), else by its worst firing alert and its score."""
    if body.get("stale"):
        return "unknown"
    severities = {a.severity for a in alerts if a.is_firing}
    if severities & {"critical", "error"} or score < 40:
        return "critical"
    if severities or score < 60:
        return "warning"
    return "healthy"


def _moved(previous: Mapping[str, Any] | None, current: Mapping[str, Any]) -> list[dict[str, Any]]:
    """What changed the score since the previous snapshot, largest first: factors, alerts, component statuses."""
    if previous is None:
        return []
    moved: list[dict[str, Any]] = []
    for name, part in current["factors"].items():
        delta = round(part["points"] - previous["factors"][name]["points"], 3)
        if delta:
            moved.append({"what": f"factor:{name}", "points": delta})
    before = {d["fingerprint"]: d for d in previous["deductions"]}
    after = {d["fingerprint"]: d for d in current["deductions"]}
    for fp in sorted(before.keys() | after.keys()):
        delta = before.get(fp, {}).get("points", 0.0) - after.get(fp, {}).get("points", 0.0)
        if delta:
            moved.append({"what": f"alert:{(after.get(fp) or before[fp])['rule']}", "fingerprint": fp, "points": delta})
    for name, body in current["components"].items():
        was = previous["components"].get(name, {}).get("status")
        if was != body["status"]:
            moved.append({"what": f"component:{name}", "from": was, "to": body["status"], "points": 0.0})
    return sorted(moved, key=lambda m: -abs(m["points"]))
