"""Forecast models: pure numpy functions over regular histories (one point per step_s, NaN = gap).

Linear OLS over the recent points (Prometheus `predict_linear`), Holt's level + trend smoothing,
and additive Holt-Winters once two full seasons exist. Parameters are fixed, so every window close
refits from the history alone: deterministic, and nothing to checkpoint but the points. Each fit
gives a value and a band half-width at any horizon, its fit quality, and threshold crossing times.

Fits take many series at once and run the smoothing recursions across them together: one numpy
step serves every series of the same length (a few series run as a float loop, with the same operations).
Values are normalised per series first (divided by the largest magnitude, then centred), so huge or
constant series never overflow; a fit whose real-unit parameters are not finite is dropped (None).
Gaps: OLS skips them at their real times; Holt and Holt-Winters carry the previous value forward,
and give no fit when more than half of their points are missing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar, Iterator, Mapping, Sequence, Union

import numpy as np
import numpy.typing as npt

Array = npt.NDArray[np.float64]

# Seasonal wins when its indices explain at least as much variance as its one-step residuals;
# estimated on noise alone the ratio stays below 0.3 (measured), on a real season it is near 1.
SEASONAL_STRENGTH_MIN = 0.5
HOLT_INIT_POINTS = 5  # the initial trend spans a few points: one noisy difference would linger
VECTOR_ROWS = 24  # below this many series of one length a float loop beats numpy's per-call overhead (measured)


@dataclass(frozen=True, slots=True)
class LinearFit:
    name: ClassVar[str] = "linear"
    points: int
    value: float  # fitted value at the last point (horizon 0)
    slope_per_s: float
    mean_x_s: float  # mean point time relative to the last point (<= 0)
    sxx_s2: float
    residual_sd: float
    rmse: float
    mae: float
    r2: float | None

    def predict(self, in_s: Array, z: float) -> tuple[Array, Array]:
        with np.errstate(all="ignore"):
            value = self.value + self.slope_per_s * in_s
            half = z * self.residual_sd * np.sqrt(1 + 1 / self.points + (in_s - self.mean_x_s) ** 2 / self.sxx_s2)
        return value, half

    def crossing_s(self, threshold: float, sign: float, z: float, max_horizon_s: float) -> tuple[float | None, float | None]:
        point = _line_crossing_s(sign * (self.value - threshold), sign * self.slope_per_s, max_horizon_s)
        return point, self._band_crossing_s(threshold, sign, z, max_horizon_s)

    def _band_crossing_s(self, threshold: float, sign: float, z: float, max_horizon_s: float) -> float | None:
        """Closed form: u(h) = a0 + a1*h + k*sqrt(c + (h - mx)^2 / sxx) is convex, so it crosses 0 at most once."""
        a0, a1, k = sign * (self.value - threshold), sign * self.slope_per_s, z * self.residual_sd
        c, mx, sxx = 1 + 1 / self.points, self.mean_x_s, self.sxx_s2
        if a0 + k * math.sqrt(c + mx * mx / sxx) >= 0:
            return 0.0
        if k == 0:
            return _line_crossing_s(a0, a1, max_horizon_s)
        # Squared, k*sqrt(...) = -(a0 + a1*h) is qa*h^2 + qb*h + qc = 0; a root is genuine where a0 + a1*h < 0.
        qa = k * k / sxx - a1 * a1
        qb = -2 * (k * k * mx / sxx + a0 * a1)
        qc = k * k * (c + mx * mx / sxx) - a0 * a0
        if abs(qa) <= 1e-12 * max(k * k / sxx, a1 * a1):
            roots = [-qc / qb] if qb != 0 else []
        else:
            disc = qb * qb - 4 * qa * qc
            if not disc >= 0:
                return None
            q = -0.5 * (qb + math.copysign(math.sqrt(disc), qb))
            roots = [q / qa] + ([qc / q] if q != 0 else [])
        crossing = min((r for r in roots if math.isfinite(r) and r >= 0 and a0 + a1 * r < 0), default=math.inf)
        return crossing if crossing <= max_horizon_s else None


@dataclass(frozen=True, slots=True)
class HoltFit:
    name: ClassVar[str] = "holt"
    points: int
    value: float  # level after the last point
    slope_per_s: float
    step_s: float
    alpha: float
    beta: float
    rmse: float  # one-step-ahead residuals
    mae: float

    def predict(self, in_s: Array, z: float) -> tuple[Array, Array]:
        with np.errstate(all="ignore"):
            value = self.value + self.slope_per_s * in_s
            half = z * self.rmse * np.sqrt(1 + _band_sum(in_s / self.step_s, self.alpha, self.beta))
        return value, half

    def crossing_s(self, threshold: float, sign: float, z: float, max_horizon_s: float) -> tuple[float | None, float | None]:
        point = _line_crossing_s(sign * (self.value - threshold), sign * self.slope_per_s, max_horizon_s)
        return point, _grid_crossing_s(self, threshold, sign, z, max_horizon_s, self.step_s)[1]


@dataclass(frozen=True, slots=True)
class SeasonalFit:
    name: ClassVar[str] = "seasonal"
    points: int
    value: float  # level + seasonal index at the last point
    level: float
    slope_per_s: float
    ahead: Array  # the seasonal index k steps ahead is ahead[k % season_points]
    step_s: float
    alpha: float
    beta: float
    rmse: float  # over the last `recent_points` one-step residuals
    mae: float
    strength: float  # var(indices) / (var(indices) + rmse^2)

    def predict(self, in_s: Array, z: float) -> tuple[Array, Array]:
        k = np.round(in_s / self.step_s)
        with np.errstate(all="ignore"):
            value = self.level + self.slope_per_s * in_s + self.ahead[k.astype(np.int64) % len(self.ahead)]
            half = z * self.rmse * np.sqrt(1 + _band_sum(k, self.alpha, self.beta))
        return value, half

    def crossing_s(self, threshold: float, sign: float, z: float, max_horizon_s: float) -> tuple[float | None, float | None]:
        return _grid_crossing_s(self, threshold, sign, z, max_horizon_s, self.step_s)


# Every model has `name`, `points`, `value` (at horizon 0), `slope_per_s`, `rmse`, `mae`;
# predict(in_s, z) -> (value, band half-width); crossing_s(threshold, sign, z, max_horizon_s) ->
# seconds until the value, and the pessimistic band edge, reach the threshold (sign +1 above, -1 below).
Model = Union[LinearFit, HoltFit, SeasonalFit]


def fit_linear(times_s: Array, windows: Sequence[Array], *, min_points: int) -> list[LinearFit | None]:
    """OLS of each window on the last len(window) of times_s (relative to the last point), gaps skipped."""
    fits: list[LinearFit | None] = [None] * len(windows)
    counts = {i: int((~np.isnan(w)).sum()) for i, w in enumerate(windows)}
    for rows, y in _groups({i: w for i, w in enumerate(windows) if counts[i] >= max(min_points, 3)}):
        x = times_s[len(times_s) - y.shape[1] :]
        yn, s0, c1, s2 = _normalise(y)
        w = (~np.isnan(y)).astype(np.float64)
        yz = np.where(w > 0, yn, 0.0)
        n = w.sum(axis=1)
        mean_x = (w @ x) / n
        dx = (x - mean_x[:, None]) * w
        sxx = (dx * dx).sum(axis=1)
        slope = (dx * yz).sum(axis=1) / sxx
        mean_y = yz.sum(axis=1) / n
        at_zero = mean_y - slope * mean_x
        residuals = (yz - at_zero[:, None] - slope[:, None] * x) * w
        sse = (residuals * residuals).sum(axis=1)
        dy = (yz - mean_y[:, None]) * w
        sst = (dy * dy).sum(axis=1)
        r2 = [1 - e / t if t > 0 else None for e, t in zip(sse.tolist(), sst.tolist())]
        with np.errstate(all="ignore"):
            columns = (n.astype(int), s0 * (c1 + s2 * at_zero), _size(s0, s2, slope), mean_x, sxx, _size(s0, s2, np.sqrt(sse / (n - 2))), _size(s0, s2, np.sqrt(sse / n)), _size(s0, s2, np.abs(residuals).sum(axis=1) / n))
        for row, (points, value, slope_per_s, mx, s_xx, sd, rmse, mae), fit_r2 in zip(rows, zip(*(c.tolist() for c in columns)), r2):
            fit = LinearFit(points=points, value=value, slope_per_s=slope_per_s, mean_x_s=mx, sxx_s2=s_xx, residual_sd=sd, rmse=rmse, mae=mae, r2=fit_r2)
            fits[row] = fit if _finite(value, slope_per_s, sd, rmse, mae) else None
    return fits


def fit_holt(windows: Sequence[Array], *, step_s: float, alpha: float, beta: float, min_points: int) -> list[HoltFit | None]:
    """Holt's linear smoothing of each window; rmse and mae from its one-step-ahead residuals."""
    fits: list[HoltFit | None] = [None] * len(windows)
    counts = [int((~np.isnan(w)).sum()) for w in windows]
    filled = {i: f for i, w in enumerate(windows) if counts[i] >= max(min_points, 3) and (f := _filled(w)) is not None}
    for rows, y in _groups(filled):
        yn, s0, c1, s2 = _normalise(y)
        k = min(y.shape[1] - 1, HOLT_INIT_POINTS)
        trend = (yn[:, k] - yn[:, 0]) / k
        level, trend, _, sq, ab = _smooth(yn, yn[:, 0], trend, np.zeros((len(rows), 1)), start=1, recent_from=1, alpha=alpha, beta=beta, gamma=0.0)
        residuals = y.shape[1] - 1
        with np.errstate(all="ignore"):
            columns = (s0 * (c1 + s2 * level), _size(s0, s2, trend / step_s), _size(s0, s2, np.sqrt(sq / residuals)), _size(s0, s2, ab / residuals))
        for row, (value, slope, rmse, mae) in zip(rows, zip(*(c.tolist() for c in columns))):
            fit = HoltFit(points=counts[row], value=value, slope_per_s=slope, step_s=step_s, alpha=alpha, beta=beta, rmse=rmse, mae=mae)
            fits[row] = fit if _finite(value, slope, rmse, mae) else None
    return fits


def fit_seasonal(histories: Sequence[Array], *, step_s: float, season_points: int, alpha: float, beta: float, gamma: float, recent_points: int) -> list[SeasonalFit | None]:
    """Additive Holt-Winters, initialised from the first two seasons; None before two full seasons."""
    m = season_points
    fits: list[SeasonalFit | None] = [None] * len(histories)
    filled = {i: f for i, h in enumerate(histories) if len(h) >= 2 * m and (f := _filled(h)) is not None and len(f) >= 2 * m}
    for rows, y in _groups(filled):
        yn, s0, c1, s2 = _normalise(y)
        n = y.shape[1]
        first, second = yn[:, :m], yn[:, m : 2 * m]
        trend = (second.mean(axis=1) - first.mean(axis=1)) / m
        offset = (np.arange(m) - (m - 1) / 2) * trend[:, None]
        indices = ((first - first.mean(axis=1)[:, None] - offset) + (second - second.mean(axis=1)[:, None] - offset)) / 2
        level = first.mean(axis=1) + (m - 1) / 2 * trend
        recent_from = max(m, n - recent_points)
        level, trend, season, sq, ab = _smooth(yn, level, trend, indices - indices.mean(axis=1)[:, None], start=m, recent_from=recent_from, alpha=alpha, beta=beta, gamma=gamma)
        ahead_n = season[:, (n - 1 + np.arange(m)) % m]
        rmse_n = np.sqrt(sq / (n - recent_from))
        var_s = ahead_n.var(axis=1)
        strength = np.where(var_s > 0, var_s / np.maximum(var_s + rmse_n * rmse_n, 1e-300), 0.0)
        with np.errstate(all="ignore"):
            ahead = s0[:, None] * (s2[:, None] * ahead_n)
            columns = (s0 * (c1 + s2 * (level + ahead_n[:, 0])), s0 * (c1 + s2 * level), _size(s0, s2, trend / step_s), _size(s0, s2, rmse_n), _size(s0, s2, ab / (n - recent_from)), strength)
        for j, (row, (value, at_level, slope_per_s, rmse, mae, fit_strength)) in enumerate(zip(rows, zip(*(c.tolist() for c in columns)))):
            points = int((~np.isnan(histories[row])).sum())
            fit = SeasonalFit(points, value, at_level, slope_per_s, ahead[j], step_s, alpha, beta, rmse, mae, fit_strength)
            fits[row] = fit if _finite(value, at_level, slope_per_s, rmse, mae) and bool(np.isfinite(ahead[j]).all()) else None
    return fits


def choose_best(models: Sequence[Model]) -> Model:
    """Seasonal when its season is strong; otherwise the lowest in-sample one-step rmse (ties: the earlier)."""
    for model in models:
        if isinstance(model, SeasonalFit) and model.strength >= SEASONAL_STRENGTH_MIN:
            return model
    return min((m for m in models if not isinstance(m, SeasonalFit)), key=lambda m: m.rmse)


def _smooth(yn: Array, level: Array, trend: Array, season: Array, *, start: int, recent_from: int, alpha: float, beta: float, gamma: float) -> tuple[Array, Array, Array, Array, Array]:
    """Additive Holt-Winters over rows of equal length (Holt: one zero season, gamma 0); squared and absolute
    one-step errors summed from `recent_from`. Vectors across rows, or floats per row: the same float operations."""
    if len(yn) >= VECTOR_ROWS:
        columns, seasons = list(np.ascontiguousarray(yn.T)), list(np.ascontiguousarray(season.T))
        out = _recursion(columns, level, trend, seasons, start, recent_from, alpha, beta, gamma, np.zeros(len(yn)))
        return out[0], out[1], np.ascontiguousarray(np.array(out[2]).T), out[3], out[4]
    rows = [_recursion(yn[r].tolist(), float(level[r]), float(trend[r]), season[r].tolist(), start, recent_from, alpha, beta, gamma, 0.0) for r in range(len(yn))]
    return tuple(np.array([r[i] for r in rows], dtype=np.float64) for i in range(5))  # type: ignore[return-value]


def _recursion(y: Sequence[Any], level: Any, trend: Any, season: list[Any], start: int, recent_from: int, alpha: float, beta: float, gamma: float, zero: Any) -> tuple[Any, Any, list[Any], Any, Any]:
    m = len(season)
    sq = ab = zero
    for t in range(start, len(y)):
        i = t % m
        v, s, forecast = y[t], season[i], level + trend
        error = v - forecast - s
        if t >= recent_from:
            sq = sq + error * error
            ab = ab + abs(error)
        level = forecast + alpha * error
        trend = trend + beta * (level - forecast)
        season[i] = s + gamma * (v - level - s)
    return level, trend, season, sq, ab


def _groups(arrays: Mapping[int, Array]) -> Iterator[tuple[list[int], Array]]:
    """Series of equal length stacked into one matrix, so that a fit runs once per length."""
    by_length: dict[int, list[int]] = {}
    for i, values in arrays.items():
        by_length.setdefault(len(values), []).append(i)
    for length in sorted(by_length):
        rows = sorted(by_length[length])
        yield rows, np.stack([arrays[i] for i in rows])


def _normalise(y: Array) -> tuple[Array, Array, Array, Array]:
    """Per row y == s0 * (c1 + s2 * yn) with yn in [-1, 1]; every row has a present value."""
    present = ~np.isnan(y)
    s0 = np.fmax.reduce(np.abs(y), axis=1)
    s0[s0 == 0] = 1.0
    y1 = y / s0[:, None]
    c1 = np.where(present, y1, 0.0).sum(axis=1) / present.sum(axis=1)
    s2 = np.fmax.reduce(np.abs(y1 - c1[:, None]), axis=1)
    s2[s2 == 0] = 1.0
    return (y1 - c1[:, None]) / s2[:, None], s0, c1, s2


def _filled(values: Array) -> Array | None:
    """Leading gaps dropped, inner gaps carry the previous value; None when more than half are missing."""
    present = ~np.isnan(values)
    if present.all():
        return values
    if not present.any():
        return None
    first = int(np.argmax(present))
    values, present = values[first:], present[first:]
    if 2 * int(present.sum()) < len(values):
        return None
    return values[np.maximum.accumulate(np.where(present, np.arange(len(values)), 0))]


def _size(s0: Array, s2: Array, yn: Array) -> Array:
    """A normalised size (a slope, an error) in real units; s0 * s2 alone could overflow."""
    return s0 * (s2 * yn)


def _finite(*numbers: float) -> bool:
    return all(math.isfinite(x) for x in numbers)


def _band_sum(k: Array, alpha: float, beta: float) -> Array:
    """sum_{j=1}^{k-1} (alpha * (1 + j*beta))^2 in closed form (0 for k <= 1)."""
    k = np.maximum(k, 1.0)
    return alpha * alpha * ((k - 1) + beta * k * (k - 1) + beta * beta * (k - 1) * k * (2 * k - 1) / 6)


def _line_crossing_s(gap: float, rate_per_s: float, max_horizon_s: float) -> float | None:
    """First h >= 0 with gap + rate*h >= 0 (signed so that >= 0 means beyond the threshold)."""
    if gap >= 0:
        return 0.0
    if not rate_per_s > 0:
        return None
    crossing = -gap / rate_per_s
    return crossing if crossing <= max_horizon_s else None


def _grid_crossing_s(model: Model, threshold: float, sign: float, z: float, max_horizon_s: float, step_s: float) -> tuple[float | None, float | None]:
    """Step through the horizon one point at a time, for the value and for the pessimistic band edge."""
    in_s = np.arange(0.0, max_horizon_s + step_s / 2, step_s)
    value, half = model.predict(in_s, z)
    with np.errstate(all="ignore"):
        excess = sign * (value - threshold)
        return _first_crossing_s(in_s, excess), _first_crossing_s(in_s, excess + half)


def _first_crossing_s(in_s: Array, excess: Array) -> float | None:
    """The first time excess >= 0, interpolated linearly between the two steps around it."""
    hits = np.flatnonzero(excess >= 0)
    if hits.size == 0:
        return None
    j = int(hits[0])
    if j == 0:
        return 0.0
    before, after = float(excess[j - 1]), float(excess[j])
    fraction = -before / (after - before) if math.isfinite(after - before) else 1.0
    return float(in_s[j - 1]) + min(max(fraction, 0.0), 1.0) * float(in_s[j] - in_s[j - 1])
