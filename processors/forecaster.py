"""The forecasting stage: one point per (series, metric) at each closed statistics window, refit, publish.

Pure: time is the window end the runtime passes in. Outputs of `observe`:
- `LatestOutput("forecasts", series, json)` for every series in state, every call: a mapping
  metric -> document, or None when no metric has enough points (the table never holds a stale forecast);
- `StreamOutput("forecasts", {"end_s", "json"})` on each minute of event time, when any series has a
  forecast: `{series: {metric: {"best", "slope_per_s", "values": {"60": v, ...}, "thresholds"}}}`.

Document of one metric (numbers are finite or null):
    {"metric", "end_s", "points" (present points in history), "best": "linear" | "holt" | "seasonal",
     "models": {"linear": {"points", "value", "slope_per_s", "rmse", "mae", "r2" (null if constant), "residual_sd"},
                "holt": {"points", "value", "slope_per_s", "rmse", "mae"},            (when <= half missing)
                "seasonal": {"points", "value", "slope_per_s", "rmse", "mae", "strength", "season_s"}},
                                                                                    (after two seasons)
     "predictions": [{"in_s", "value", "low", "high"}] at horizons_s, from the best model,
     "thresholds": [{"value", "direction", "in_s", "band_in_s"}]}   (None: not within max_horizon_s)
`value` is the model's value at end_s; rmse/mae are in-sample one-step errors over the last fit_points.
`best` is the seasonal model when its season is strong (strength >= 0.5), else the lower rmse of linear
and holt; thresholds apply to their metric in every series; `band_in_s` is when the pessimistic band
edge crosses (high edge for "above", low for "below"), 0 when already beyond.

Checkpoint parts: ("h", series, metric, chunk) -> up to 60 values (float or None) for the point indices
chunk*60 ... (point index = end_s // step_s), so each observe rewrites only the newest chunk (and the
chunks a skipped stretch of windows spans); a position no chunk holds restores as a gap.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from statistics import NormalDist
from typing import Any, Mapping

import numpy as np

from processors.contract import LatestOutput, Output, PartKey, Parts, StreamOutput, to_json
from processors.forecast import Array, LinearFit, Model, SeasonalFit, choose_best, fit_holt, fit_linear, fit_seasonal

CHUNK_POINTS = 60  # one part per 10 min at step_s 10: an observe rewrites <= 60 floats per series and metric
STREAM_EVERY_S = 60  # the forecasts stream gets one entry per minute of event time, so it stays small
DIRECTIONS = {"above": 1.0, "below": -1.0}

HistoryKey = tuple[str, str]  # (series, metric)


@dataclass(frozen=True, slots=True, kw_only=True)
class ForecastSettings:
    step_s: int = 10  # one point per closed statistics window
    history_points: int = 1080  # bounded memory per series: 3 h, enough for two hourly seasons and one spare
    fit_points: int = 60  # recent points used by OLS and Holt
    season_s: int = 3600  # seasonal model once 2 seasons exist
    horizons_s: tuple[int, ...] = (60, 600, 3600)  # predictions reported at these horizons
    max_horizon_s: int = 6 * 3600  # time-to-threshold search limit
    confidence: float = 0.95
    alpha: float = 0.5
    beta: float = 0.1
    seasonal_beta: float = 0.01  # trend extrapolated over a whole season: 0.1 made its noise dominate
    gamma: float = 0.1
    min_points: int = 5
    thresholds: Mapping[str, tuple[tuple[float, str], ...]] = field(default_factory=dict)  # metric -> ((value, "above"|"below"), ...)

    def __post_init__(self) -> None:
        step = self.step_s
        if step <= 0 or self.season_s % step or self.season_s // step < 2:
            raise ValueError(f"step_s must be > 0 and season_s a multiple of it, at least 2 steps: {step}, {self.season_s}")
        if any(h <= 0 or h % step for h in (*self.horizons_s, self.max_horizon_s)):
            raise ValueError(f"horizons_s and max_horizon_s must be positive multiples of step_s: {self.horizons_s}, {self.max_horizon_s}")
        if not 3 <= self.min_points <= self.fit_points <= self.history_points:
            raise ValueError("need 3 <= min_points <= fit_points <= history_points")
        if not 0 < self.confidence < 1 or not all(0 < p <= 1 for p in (self.alpha, self.beta, self.seasonal_beta, self.gamma)):
            raise ValueError("confidence must be in (0, 1) and alpha, beta, seasonal_beta, gamma in (0, 1]")
        for metric, rules in self.thresholds.items():
            if any(d not in DIRECTIONS or not math.isfinite(v) for v, d in rules):
                raise ValueError(f"thresholds[{metric!r}]: each must be (finite value, 'above' | 'below'), got {rules!r}")


class Forecaster:
    """Feed it one point per closed window; read forecasts back from its outputs or `latest`.

        forecaster = Forecaster(ForecastSettings(thresholds={"rss_bytes": ((8e9, "above"),)}))
        outputs = forecaster.observe(end_s, {"parser": {"rss_bytes": 1.2e9, "error_rate": 0.01}})
    """

    name = "forecasts"

    def __init__(self, settings: ForecastSettings = ForecastSettings()) -> None:
        self.settings = settings
        self._z = NormalDist().inv_cdf(0.5 + settings.confidence / 2)
        self._horizons_s = np.asarray(settings.horizons_s, dtype=np.float64)
        self._reset()

    def _reset(self) -> None:
        self._history: dict[HistoryKey, Array] = {}  # values for point indices last-len+1 .. last, NaN = gap
        self._oldest_chunk: dict[HistoryKey, int] = {}  # the oldest chunk part still in the checkpoint
        self._last_index: int | None = None
        self._documents: dict[str, dict[str, dict[str, Any]]] = {}  # derived: rebuilt by every observe and restore
        self._dirty: set[PartKey] = set()
        self._deleted: set[PartKey] = set()

    # -- observing

    def observe(self, end_s: float, values: Mapping[str, Mapping[str, float | None]]) -> list[Output]:
        """Add one point per (series, metric) at window end `end_s` (series = a component name, or "__pipeline__";
        metrics are e.g. "efficiency", "throughput_per_s", "latency_p99_ms", "rss_bytes", "error_rate"),
        refit, and return outputs."""
        if not math.isfinite(end_s) or end_s % self.settings.step_s:
            raise ValueError(f"end_s must be a multiple of step_s {self.settings.step_s}: {end_s}")
        index = int(end_s // self.settings.step_s)
        if self._last_index is not None and index <= self._last_index:
            raise ValueError(f"end_s must increase: {end_s} after {self._last_index * self.settings.step_s}")
        before = {key[0] for key in self._history}  # a series dropped now gets its None
        self._append(index, values)
        self._documents = self._forecast_all()
        series = sorted(before | {key[0] for key in self._history})
        outputs: list[Output] = [LatestOutput("forecasts", s, to_json(self._documents[s]) if s in self._documents else None) for s in series]
        if index * self.settings.step_s % STREAM_EVERY_S == 0 and self._documents:
            compact = {s: {m: _compact(doc) for m, doc in docs.items()} for s, docs in self._documents.items()}
            outputs.append(StreamOutput("forecasts", {"end_s": str(index * self.settings.step_s), "json": to_json(compact)}))
        return outputs

    def latest(self, series: str, metric: str) -> dict[str, Any] | None:
        """The newest forecast document of one series and metric (what trend alert rules read)."""
        return self._documents.get(series, {}).get(metric)

    def _append(self, index: int, values: Mapping[str, Mapping[str, float | None]]) -> None:
        history_points = self.settings.history_points
        gap = min(index - self._last_index, history_points) if self._last_index is not None else 1
        written_until = self._end_index() // CHUNK_POINTS + 1  # chunks past this were never written
        self._last_index = index
        incoming = {(s, m): _point(v) for s, metrics in values.items() for m, v in metrics.items()}
        for key in incoming.keys() - self._history.keys():
            if not math.isnan(incoming[key]):
                self._history[key] = np.empty(0)
                self._oldest_chunk[key] = index // CHUNK_POINTS
        for key in sorted(self._history):
            new = np.full(gap, np.nan)
            new[-1] = incoming.get(key, math.nan)
            kept = np.concatenate((self._history[key], new))[-history_points:]
            present = np.flatnonzero(~np.isnan(kept))
            first_chunk = (index - len(kept) + 1 + int(present[0])) // CHUNK_POINTS if present.size else index // CHUNK_POINTS + 1
            for chunk in range(self._oldest_chunk[key], min(first_chunk, written_until)):
                self._deleted.add(("h", *key, chunk))
                self._dirty.discard(("h", *key, chunk))
            if not present.size:
                del self._history[key], self._oldest_chunk[key]
                continue
            self._history[key] = kept[int(present[0]) :]
            self._oldest_chunk[key] = first_chunk
            self._dirty.update(("h", *key, c) for c in range(max((index - gap + 1) // CHUNK_POINTS, first_chunk), index // CHUNK_POINTS + 1))

    # -- fitting

    def _forecast_all(self) -> dict[str, dict[str, dict[str, Any]]]:
        s = self.settings
        keys = sorted(self._history)
        histories = [self._history[key] for key in keys]
        recent = [history[-s.fit_points :] for history in histories]
        times_s = (np.arange(s.fit_points, dtype=np.float64) - (s.fit_points - 1)) * s.step_s
        linear = fit_linear(times_s, recent, min_points=s.min_points)
        holt = fit_holt(recent, step_s=s.step_s, alpha=s.alpha, beta=s.beta, min_points=s.min_points)
        seasonal = fit_seasonal(histories, step_s=s.step_s, season_points=s.season_s // s.step_s, alpha=s.alpha, beta=s.seasonal_beta, gamma=s.gamma, recent_points=s.fit_points)
        documents: dict[str, dict[str, dict[str, Any]]] = {}
        for (series, metric), history, *fits in zip(keys, histories, linear, holt, seasonal):
            if fits[0] is not None:
                documents.setdefault(series, {})[metric] = self._document(metric, history, [m for m in fits if m is not None])
        return documents

    def _document(self, metric: str, history: Array, models: list[Model]) -> dict[str, Any]:
        s = self.settings
        best = choose_best(models)
        value, half = best.predict(self._horizons_s, self._z)
        with np.errstate(all="ignore"):
            low, high = value - half, value + half
        thresholds = []
        for threshold, direction in s.thresholds.get(metric, ()):
            in_s, band_in_s = best.crossing_s(threshold, DIRECTIONS[direction], self._z, s.max_horizon_s)
            thresholds.append({"value": threshold, "direction": direction, "in_s": _num(in_s), "band_in_s": _num(band_in_s)})
        return {
            "metric": metric,
            "end_s": self._end_s(),
            "points": int((~np.isnan(history)).sum()),
            "best": best.name,
            "models": {m.name: _quality(m, s.season_s) for m in models},
            "predictions": [
                {"in_s": h, "value": _num(v), "low": _num(lo), "high": _num(hi)} for h, v, lo, hi in zip(s.horizons_s, value.tolist(), low.tolist(), high.tolist())
            ],
            "thresholds": thresholds,
        }

    def _end_s(self) -> int:
        return (self._last_index or 0) * self.settings.step_s

    # -- checkpoint

    def take_changes(self) -> tuple[Parts, set[PartKey]]:
        written = {key: self._chunk(key) for key in sorted(self._dirty, key=str)}
        deleted = self._deleted - written.keys()
        self._dirty, self._deleted = set(), set()
        return written, deleted

    def snapshot(self) -> Parts:
        return {
            key: self._chunk(key)
            for (series, metric), history in sorted(self._history.items())
            for key in (("h", series, metric, c) for c in range(self._oldest_chunk[series, metric], self._end_index() // CHUNK_POINTS + 1))
        }

    def restore(self, parts: Mapping[PartKey, Any]) -> None:
        self._reset()
        chunks: dict[HistoryKey, dict[int, list[float | None]]] = {}
        for key, value in parts.items():
            if key[0] != "h" or len(key) != 4:
                raise ValueError(f"not a forecaster part: {key!r}")
            chunks.setdefault((str(key[1]), str(key[2])), {})[int(key[3])] = value
        if not chunks:
            return
        last = max(c * CHUNK_POINTS + len(v) - 1 for by_chunk in chunks.values() for c, v in by_chunk.items())
        self._last_index = last
        for key, by_chunk in sorted(chunks.items()):
            start = min(by_chunk) * CHUNK_POINTS
            history = np.full(last - start + 1, np.nan)
            for c, v in by_chunk.items():
                history[c * CHUNK_POINTS - start : c * CHUNK_POINTS - start + len(v)] = [math.nan if x is None else x for x in v]
            history = history[-self.settings.history_points :]
            present = np.flatnonzero(~np.isnan(history))
            if present.size:
                self._history[key] = history[int(present[0]) :]
                self._oldest_chunk[key] = min(by_chunk)
            else:
                self._deleted.update(("h", *key, c) for c in by_chunk)
        self._documents = self._forecast_all()

    def _end_index(self) -> int:
        return self._last_index if self._last_index is not None else -1

    def _chunk(self, key: PartKey) -> list[float | None]:
        history = self._history[str(key[1]), str(key[2])]
        first = self._end_index() - len(history) + 1
        start = int(key[3]) * CHUNK_POINTS
        stop = min(start + CHUNK_POINTS, self._end_index() + 1)
        values = history[max(start - first, 0) : stop - first].tolist()
        padding: list[float | None] = [None] * max(first - start, 0)
        return padding + [None if math.isnan(x) else x for x in values]


def _point(value: float | None) -> float:
    """A missing or non-finite input is a gap."""
    return float(value) if value is not None and math.isfinite(value) else math.nan


def _num(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def _quality(model: Model, season_s: int) -> dict[str, Any]:
    quality: dict[str, Any] = {"points": model.points, "value": _num(model.value), "slope_per_s": _num(model.slope_per_s), "rmse": _num(model.rmse), "mae": _num(model.mae)}
    if isinstance(model, LinearFit):
        quality.update(r2=_num(model.r2), residual_sd=_num(model.residual_sd))
    if isinstance(model, SeasonalFit):
        quality.update(strength=_num(model.strength), season_s=season_s)
    return quality


def _compact(document: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "best": document["best"],
        "slope_per_s": document["models"][document["best"]]["slope_per_s"],
        "values": {str(p["in_s"]): p["value"] for p in document["predictions"]},
        "thresholds": document["thresholds"],
    }
