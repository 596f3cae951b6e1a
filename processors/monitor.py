"""The monitor: statistics, alerts, forecasts, health and recommendations as one processor with one checkpoint.

The judging stages read the statistics in memory, as they are folded, rather
than from Redis: alert rules are evaluated on every batch (the batch's
component) and on every tick (everything) over the sliding last 10 s, so a
fault is judged within one batch of arriving. One commit covers all four
stages, so after a crash they resume from the same instant of the log.
Checkpoint parts are namespaced by stage: ("stats", ...), ("alerts", ...).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from schemas.events import TAG_COMMAND

from processors import metrics
from processors.alert_state import Policy
from processors.alerts import AlertEvaluator, AlertSettings
from processors.contract import BatchItem, Item, Output, PartKey, Parts, StreamOutput
from processors.forecaster import Forecaster, ForecastSettings
from processors.health import HealthScorer, HealthSettings
from processors.recommend import Recommender, RecommenderSettings
from processors.rules import Rule
from processors.stats import StatsProcessor, StatsSettings



@dataclass(frozen=True, slots=True, kw_only=True)
class MonitorSettings:
    rules: tuple[Rule, ...]
    stats: StatsSettings = field(default_factory=StatsSettings)
    policy: Policy = field(default_factory=Policy)
    health: HealthSettings = field(default_factory=HealthSettings)
    forecast: ForecastSettings | None = None  # None: derived from the rules (their thresholds) and the window
    recommend: RecommenderSettings = field(default_factory=RecommenderSettings)

    def forecast_settings(self) -> ForecastSettings:
        """Forecasts report the time to every threshold a trend rule watches, and to the first level of each static rule."""
        if self.forecast is not None:
            return self.forecast
        thresholds: dict[str, set[tuple[float, str]]] = {}
        for rule in self.rules:
            if rule.kind == "trend":
                thresholds.setdefault(rule.metric, set()).add((rule.threshold, rule.direction))
            elif rule.kind == "threshold" and rule.metric in metrics.FORECAST_METRICS:
                thresholds.setdefault(rule.metric, set()).add((rule.levels[0][1], rule.direction))
        return ForecastSettings(step_s=self.stats.window_s, thresholds={m: tuple(sorted(t)) for m, t in sorted(thresholds.items())})


class MonitorProcessor:
    name = "monitor"

    def __init__(self, settings: MonitorSettings) -> None:
        self.settings = settings
        self.stats = StatsProcessor(settings.stats)
        self.alerts = AlertEvaluator(AlertSettings(rules=settings.rules, policy=settings.policy))
        self.forecasts = Forecaster(settings.forecast_settings())
        self.health = HealthScorer(settings.health)
        self.recommender = Recommender(settings.recommend)
        # Rules judged per batch: the 10 s window, per component (operation and pipeline rules wait for the tick).
        self._judges_batches = any(r.window == "10s" and r.scope == "component" for r in settings.rules)
        self._stages: dict[str, Any] = {"stats": self.stats, "alerts": self.alerts, "forecasts": self.forecasts, "health": self.health, "recommend": self.recommender}

    def apply(self, items: Sequence[Item]) -> list[Output]:
        outputs: list[Output] = []
        for item in items:
            outputs += self.stats.apply([item])
            now_s = self.stats.stream_time_s
            judged: list[Output] = []
            if isinstance(item, BatchItem):
                judged += self._commands(item)
                component = item.decoded.envelope.component
                if self._judges_batches and self.stats.knows(component) and set(item.decoded.columns) - {TAG_COMMAND}:
                    judged += self.alerts.evaluate(now_s, {"10s": self.stats.sliding(component)}, self.forecasts.latest, only_component=component, causes=self.health.causes())
            closed = False
            for kind, document in self.stats.documents:
                if kind == "window":
                    closed = True
                    self.alerts.learn(document["end_s"], document)
                    outputs += self.forecasts.observe(document["end_s"], _forecast_values(document))
                else:
                    judged += self.alerts.evaluate(now_s, document, self.forecasts.latest, causes=self.health.causes())
                    outputs += self.health.assess(now_s, document["10s"], self.alerts.active(), force=closed)
                    outputs += self.recommender.assess(now_s, document["10s"], self.alerts.active())
            outputs += judged
            if isinstance(item, BatchItem) and any(isinstance(o, StreamOutput) and o.stream == "alerts" for o in judged):
                # The alert list changed between ticks: the health snapshot follows at once, so the two never disagree.
                outputs += self.health.assess(now_s, self.stats.sliding(), self.alerts.active(), force=False)
        return outputs

    def _commands(self, item: BatchItem) -> list[Output]:
        columns = item.decoded.columns.get(TAG_COMMAND)
        if columns is None:
            return []
        outputs: list[Output] = []
        f = columns.fields
        for row in zip(f["timestamp_s"], f["action"], f["target"], f["by"], f["reason"], f["expires_in_s"], f["matchers"]):
            timestamp_s, *command = row
            # A command takes effect at stream time, where it stands in the log, whatever the sender's clock says.
            now_s = self.stats.stream_time_s if math.isfinite(self.stats.stream_time_s) else timestamp_s
            outputs += self.alerts.command(now_s, *command)
        return outputs

    # -- checkpoint: each stage's parts under its name

    def take_changes(self) -> tuple[Parts, set[PartKey]]:
        written: Parts = {}
        deleted: set[PartKey] = set()
        for name, stage in self._stages.items():
            stage_written, stage_deleted = stage.take_changes()
            written.update(((name, *key), value) for key, value in stage_written.items())
            deleted.update((name, *key) for key in stage_deleted)
        return written, deleted

    def snapshot(self) -> Parts:
        return {(name, *key): value for name, stage in self._stages.items() for key, value in stage.snapshot().items()}

    def restore(self, parts: Mapping[PartKey, Any]) -> None:
        by_stage: dict[str, dict[PartKey, Any]] = {name: {} for name in self._stages}
        for key, value in parts.items():
            by_stage[str(key[0])][tuple(key[1:])] = value
        for name, stage in self._stages.items():
            stage.restore(by_stage[name])


def _forecast_values(document: Mapping[str, Any]) -> dict[str, dict[str, float | None]]:
    """One point per series and metric from a closed window: the pipeline and every component."""
    values: dict[str, dict[str, float | None]] = {}
    for scope in ("pipeline", "component"):
        for labels, stats, processes in metrics.series(document, scope):
            points = {m: metrics.reading(m, stats, processes)[0] for m in metrics.FORECAST_METRICS}
            values[metrics.series_name(labels)] = {m: v for m, v in points.items() if v is None or math.isfinite(v)}
    return values
