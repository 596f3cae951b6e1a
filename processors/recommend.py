"""The recommender: advice about caches, concurrency, restarts and batch sizes, from statistics and alerts.

Pure, a stage of the monitor judged at every tick over the live 10 s view. Each
rule reads one component (its statistics, processes, the settings it reports
with "started"/"configured" lifecycle events, and its active alerts) and may
propose a new value for one setting. Concurrency follows AIMD (Netflix
concurrency-limits): shed load multiplicatively on overload, add one when busy
and healthy; cache growth follows the HPA ratio `size * goal / hit_rate`. A
repeat of the same advice is not re-issued until it expires; advice no longer
supported is withdrawn from the `recommendations` latest table.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Callable, Final, Iterable, Mapping

from schemas.control import SETTINGS, Recommendation, encode

from processors import metrics
from processors.alert_state import Alert
from processors.contract import LatestOutput, Output, PartKey, Parts, StreamOutput

LATENCY_RULES: Final = frozenset({"max_processing_time", "latency_degradation"})
MEMORY_RULES: Final = frozenset({"max_memory", "memory_exhaustion_forecast"})
ABSENCE_RULES: Final = frozenset({"component_absent"})


@dataclass(frozen=True, slots=True, kw_only=True)
class RecommenderSettings:
    ttl_s: float = 60.0  # advice older than this is stale: the optimizer skips it, the recommender re-issues it if it still holds
    repeat_tolerance: float = 0.1  # a proposal within this fraction of the one in force is the same advice (the optimizer's tolerance)
    min_count: int = 50  # operations (or cache lookups) behind a judgement
    max_error_rate: float = 0.05  # above, with errors of overload types: shed concurrency (the max_error_rate rule's level)
    broken_error_rate: float = 0.9  # above (with errors not of overload types): the component is failing outright, restart it
    decrease_factor: float = 0.9  # AIMD multiplicative decrease (at least one less)
    cache_hit_floor: float = 0.7  # below: grow the cache (the min_cache_hit_rate rule's level)
    cache_hit_goal: float = 0.85  # the hit rate a grown cache aims at
    memory_limit_bytes: float = 2 * 1024**3  # the max_memory rule's level
    memory_pressure: float = 0.75  # of the limit: shrink caches and batches above it
    memory_headroom: float = 0.5  # of the limit: grow caches only below it
    max_host_cpu_percent: float = 80.0  # raise concurrency only with CPU to spare
    # Error types that mean "too much at once", not "broken": however many, they call for less concurrency, not a restart.
    overload_errors: frozenset[str] = frozenset({"Throttled", "TimeoutError", "Overloaded", "TooManyRequests", "ResourceExhausted"})


@dataclass(frozen=True, slots=True)
class Proposal:
    """A rule's advice: the fields of a Recommendation that the rule decides (the rest come when it is issued)."""

    kind: str
    setting: str
    current: int | None
    proposed: int | None
    reason: str
    expected_effect: str
    priority: str
    confidence: float
    evidence: dict[str, float]


@dataclass(frozen=True, slots=True)
class Situation:
    """What the rules read about one component."""

    component: str
    stats: Mapping[str, Any]
    config: Mapping[str, Any]
    alerts: frozenset[str]  # rules of its firing alerts
    rss_bytes: float | None
    host_cpu_percent: float | None
    settings: RecommenderSettings
    stale: bool = False  # silent: only a restart can be advised

    def setting(self, name: str) -> int | None:
        value = self.config.get(name)
        return value if type(value) is int else None

    @property
    def count(self) -> int:
        return int(self.stats.get("count", 0))

    @property
    def error_rate(self) -> float:
        return float(self.stats.get("error_rate") or 0.0)

    @property
    def overloaded_errors(self) -> bool:
        """Most errors are of overload types."""
        by_type: Mapping[str, int] = self.stats.get("errors_by_type", {})
        overload = sum(n for kind, n in by_type.items() if kind in self.settings.overload_errors)
        return overload * 2 > sum(by_type.values())

    @property
    def memory_pressed(self) -> bool:
        s = self.settings
        return bool(self.alerts & MEMORY_RULES) or (self.rss_bytes is not None and self.rss_bytes >= s.memory_pressure * s.memory_limit_bytes)


def _confidence(samples: int, settings: RecommenderSettings) -> float:
    """More data, more confidence: full at four times the minimum."""
    return round(min(1.0, samples / (4 * settings.min_count)), 3)


def restart(s: Situation) -> Proposal | None:
    absent = bool(s.alerts & ABSENCE_RULES)
    failing = s.count >= s.settings.min_count and s.error_rate >= s.settings.broken_error_rate and not s.overloaded_errors
    if not absent and not failing:
        return None
    reason = "it stopped reporting (component_absent is firing)" if absent else f"{s.error_rate:.0%} of its {s.count} operations fail"
    return Proposal(
        "restart_component", "restart_generation", s.setting("restart_generation"), None, f"restart {s.component}: {reason}",
        "the component starts afresh and its operations succeed again", "critical", 0.9 if absent else _confidence(s.count, s.settings),
        {"error_rate": s.error_rate, "count": float(s.count)},
    )  # fmt: skip


def lower_concurrency(s: Situation) -> Proposal | None:
    current = s.setting("concurrency")
    # Only overload errors say that less at once would help; a bug or a broken component fails at any concurrency.
    overloaded = (s.error_rate >= s.settings.max_error_rate and s.overloaded_errors) or bool(s.alerts & LATENCY_RULES)
    if current is None or current <= 1 or s.count < s.settings.min_count or not overloaded:
        return None
    proposed = max(1, min(current - 1, math.floor(current * s.settings.decrease_factor)))
    return Proposal(
        "lower_concurrency", "concurrency", current, proposed,
        f"{s.component} is overloaded (error rate {s.error_rate:.1%}, latency alerts {sorted(s.alerts & LATENCY_RULES)}) at concurrency {current}",
        "fewer errors and lower latency, at some throughput", "high", _confidence(s.count, s.settings),
        {"error_rate": s.error_rate, "count": float(s.count)},
    )  # fmt: skip


def raise_concurrency(s: Situation) -> Proposal | None:
    current = s.setting("concurrency")
    if current is None or s.count < s.settings.min_count or s.host_cpu_percent is None:
        return None
    latency = s.stats.get("latency_ms", {})
    in_flight = float(s.stats.get("rate_per_s") or 0.0) * float(latency.get("mean") or 0.0) / 1000  # Little's law
    healthy = s.error_rate < s.settings.max_error_rate / 5 and not s.alerts & LATENCY_RULES
    if not healthy or in_flight < current / 2 or s.host_cpu_percent >= s.settings.max_host_cpu_percent:
        return None
    return Proposal(
        "raise_concurrency", "concurrency", current, current + 1,
        f"{s.component} is busy ({in_flight:.1f} operations in flight of {current}) and healthy, with CPU to spare ({s.host_cpu_percent:.0f} %)",
        "more throughput at the same latency", "low", _confidence(s.count, s.settings),
        {"in_flight": in_flight, "host_cpu_percent": s.host_cpu_percent, "error_rate": s.error_rate},
    )  # fmt: skip


def grow_cache(s: Situation) -> Proposal | None:
    current = s.setting("cache_size")
    cache = s.stats.get("cache", {})
    lookups = int(cache.get("hits", 0) + cache.get("misses", 0))
    hit_rate = cache.get("hit_rate")
    settings = s.settings
    if current is None or hit_rate is None or lookups < settings.min_count or hit_rate >= settings.cache_hit_floor:
        return None
    if s.rss_bytes is None or s.rss_bytes >= settings.memory_headroom * settings.memory_limit_bytes or s.memory_pressed:
        return None
    proposed = math.ceil(current * min(2.0, settings.cache_hit_goal / max(hit_rate, 0.05)))  # the HPA ratio, at most doubling
    return Proposal(
        "grow_cache", "cache_size", current, proposed,
        f"cache hit rate of {s.component} is {hit_rate:.0%} (below {settings.cache_hit_floor:.0%}) and memory is plentiful",
        f"hit rate toward {settings.cache_hit_goal:.0%}, fewer recomputations", "medium", _confidence(lookups, settings),
        {"hit_rate": float(hit_rate), "lookups": float(lookups), "rss_bytes": s.rss_bytes},
    )  # fmt: skip


def _halve(kind: str, setting: str, what: str) -> Callable[[Situation], Proposal | None]:
    """Under memory pressure, halve a setting that holds memory (a cache, a batch)."""

    def rule(s: Situation) -> Proposal | None:
        current = s.setting(setting)
        if current is None or not s.memory_pressed:
            return None
        proposed = max(SETTINGS[setting].minimum, current // 2)
        if proposed >= current:
            return None
        return Proposal(
            kind, setting, current, proposed, f"{s.component} is under memory pressure (largest process {s.rss_bytes or 0:,.0f} bytes)",
            f"less memory held by its {what}", "high", 0.8, {"rss_bytes": s.rss_bytes or 0.0},
        )  # fmt: skip

    return rule


RULES: Final[tuple[Callable[[Situation], Proposal | None], ...]] = (
    restart,
    lower_concurrency,
    raise_concurrency,
    grow_cache,
    _halve("shrink_cache", "cache_size", "cache"),
    _halve("reduce_batch_size", "batch_size", "batches"),
)


class Recommender:
    name = "recommendations"

    def __init__(self, settings: RecommenderSettings = RecommenderSettings()) -> None:
        self.settings = settings
        self._issued: dict[str, dict[str, Any]] = {}  # "component/kind" -> the advice in force
        self._issued_total = 0
        self._dirty: set[PartKey] = set()
        self._deleted: set[PartKey] = set()

    def situations(self, document: Mapping[str, Any], active: Iterable[Alert]) -> list[Situation]:
        firing: dict[str, set[str]] = {}
        for alert in active:
            if alert.is_firing:
                firing.setdefault(alert.labels.get("component", ""), set()).add(alert.rule)
        host_cpu = [h["cpu_percent"] for h in document.get("hosts", {}).values() if h.get("cpu_percent") is not None]
        ((_, pipeline_stats, every_process),) = metrics.series(document, "pipeline")
        # A component whose process is sampled under another component's name: judge by the largest process there is.
        largest_rss, _ = metrics.reading("rss_bytes", pipeline_stats, every_process)
        found = []
        for labels, stats, processes in metrics.series(document, "component"):
            component = labels["component"]
            body = document["components"][component]
            alerts = frozenset(firing.get(component, ()))
            stale = bool(body.get("stale")) or "stats" not in body
            if stale and not alerts & ABSENCE_RULES:
                continue  # no advice on old data; a component gone silent is judged by its absence alert alone
            rss = metrics.reading("rss_bytes", stats, processes)[0] if processes else largest_rss
            found.append(Situation(component, stats, body.get("config", {}), alerts, rss, max(host_cpu) if host_cpu else None, self.settings, stale))
        return found

    def assess(self, now_s: float, document: Mapping[str, Any], active: Iterable[Alert]) -> list[Output]:
        """Advice for every component of the live view; only new or changed advice is emitted."""
        outputs: list[Output] = []
        holding: set[str] = set()
        for situation in self.situations(document, active):
            for rule in (restart,) if situation.stale else RULES:
                proposal = rule(situation)
                if proposal is None:
                    continue
                key = f"{situation.component}/{proposal.kind}"
                holding.add(key)
                if self._in_force(self._issued.get(key), proposal, now_s):
                    continue  # the same advice is still in force: not repeated
                outputs += self._issue(now_s, key, situation.component, proposal)
        for key in sorted(self._issued.keys() - holding):
            del self._issued[key]  # no longer supported by the data: withdrawn
            self._dirty.discard(("issued", key))
            self._deleted.add(("issued", key))
            outputs.append(LatestOutput("recommendations", key, None))
        return outputs

    def _in_force(self, issued: Mapping[str, Any] | None, proposal: Proposal, now_s: float) -> bool:
        """Unexpired advice from the same current value whose proposal moved less than the repeat tolerance counts as the same."""
        if issued is None or now_s >= issued["expires_at_s"] or issued.get("current") != proposal.current:
            return False
        previous: int | None = issued["proposed"]
        if previous is None or proposal.proposed is None:
            return previous == proposal.proposed
        return abs(proposal.proposed - previous) <= self.settings.repeat_tolerance * max(abs(previous), 1)

    def _issue(self, now_s: float, key: str, component: str, p: Proposal) -> list[Output]:
        self._issued_total += 1
        # A proposal is the advice; issuing it gives it an id, its component and its time.
        recommendation = Recommendation(
            recommendation_id=f"r{self._issued_total}", component=component, issued_at_s=now_s, expires_at_s=now_s + self.settings.ttl_s, **asdict(p)
        )
        self._issued[key] = {"proposed": p.proposed, "current": p.current, "expires_at_s": recommendation.expires_at_s}
        self._dirty.update({("issued", key), ("issued_total",)})
        self._deleted.discard(("issued", key))
        text = encode(recommendation)
        return [StreamOutput("recommendations", {"id": recommendation.recommendation_id, "json": text}), LatestOutput("recommendations", key, text)]

    # -- checkpoint

    def _part(self, key: PartKey) -> Any:
        return self._issued_total if key == ("issued_total",) else self._issued[str(key[1])]

    def take_changes(self) -> tuple[Parts, set[PartKey]]:
        written = {key: self._part(key) for key in self._dirty}
        deleted, self._dirty, self._deleted = self._deleted, set(), set()
        return written, deleted

    def snapshot(self) -> Parts:
        return {("issued_total",): self._issued_total, **{("issued", key): value for key, value in self._issued.items()}}

    def restore(self, parts: Mapping[PartKey, Any]) -> None:
        self._issued_total = int(parts.get(("issued_total",), 0))
        self._issued = {str(k[1]): dict(v) for k, v in parts.items() if k[0] == "issued"}
        self._dirty, self._deleted = set(), set()
