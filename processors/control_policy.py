"""The optimizer's brakes, as pure functions of numbers: tolerance, stabilization, rate limits, restart back-off.

Kubernetes HPA: skip changes within a tolerance, scale down only to the highest
value proposed within a stabilization window, and change by at most double (or
+4) up and half down at a time. Restarts back off from 10 s doubling to 5 min,
reset after 10 min without one, and stop after too many in a period (the
Erlang/OTP supervisor's intensity and period).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Final, Sequence


@dataclass(frozen=True, slots=True, kw_only=True)
class OptimizerSettings:
    mode: str = "enabled"  # at start; operators switch it with optimizer commands
    tolerance: float = 0.1  # a change smaller than this fraction of the current value is not worth making
    cooldown_s: float = 30.0  # per setting: no second change sooner (and never while one is being verified)
    scale_down_stabilization_s: float = 60.0  # scale down only to the highest value proposed within this window
    max_up_factor: float = 2.0  # per change, up to double ...
    max_up_step: int = 4  # ... or +4, whichever is more
    max_down_factor: float = 0.5  # per change, down to half at most
    verify_s: float = 30.0  # how long after a change its effect is watched
    worse_by_points: float = 10.0  # a health drop this large after a change rolls it back
    rollback_hold_s: float = 300.0  # a change rolled back is not tried again in that direction this long
    reversal_hold_s: float = 300.0  # after a step down, no step up this long (AIMD probing would flip-flop)
    setting_ttl_s: float = 600.0  # control settings expire unless renewed, so a dead optimizer's settings fade away
    restart_backoff_s: float = 10.0
    restart_backoff_max_s: float = 300.0
    restart_reset_s: float = 600.0  # a component that ran this long since its last restart starts again from 10 s
    max_restarts: int = 5  # within restart_period_s; beyond, the optimizer gives up and says so
    restart_period_s: float = 3600.0

    @property
    def history_s(self) -> float:
        """How much health history the verification needs."""
        return 2 * self.verify_s


# The health factors a setting moves: its change is judged on them alone, so an alert or a factor it cannot
# affect (another fault at the same time) does not get it rolled back.
RELEVANT_FACTORS: Final[dict[str, tuple[str, ...]]] = {
    "concurrency": ("success", "speed"),
    "cache_size": ("cache", "memory"),
    "batch_size": ("memory", "speed"),
}
ALL_FACTORS: Final = ("cache", "success", "speed", "memory")


def within_tolerance(current: int, proposed: int, tolerance: float) -> bool:
    return abs(proposed - current) < tolerance * max(current, 1)


def stabilized(current: int, proposed: int, recent: Sequence[tuple[float, int]]) -> int:
    """Scaling down goes only as far as the highest value proposed in the window (the safest); up is not held."""
    if proposed >= current:
        return proposed
    return max([proposed, *(value for _, value in recent if value < current)])


def rate_limited(current: int, proposed: int, settings: OptimizerSettings) -> int:
    if proposed > current:
        return min(proposed, max(math.ceil(current * settings.max_up_factor), current + settings.max_up_step))
    return max(proposed, math.floor(current * settings.max_down_factor))


def restart_verdict(now_s: float, history: dict[str, Any], settings: OptimizerSettings) -> str | None:
    """Why a restart may not happen now (None: it may). `history` holds `times`, `last_s`, `backoff_s`."""
    times = [t for t in history.get("times", []) if t > now_s - settings.restart_period_s]
    if len(times) >= settings.max_restarts:
        return f"restart_limit: {len(times)} restarts within {settings.restart_period_s:g} s; giving up until the period passes"
    last_s = history.get("last_s")
    if last_s is not None and now_s < last_s + history.get("backoff_s", settings.restart_backoff_s):
        return f"restart_backoff: next restart allowed at {last_s + history['backoff_s']:.3f}"
    return None


def record_restart(now_s: float, history: dict[str, Any], settings: OptimizerSettings) -> dict[str, Any]:
    last_s = history.get("last_s")
    backoff_s = history.get("backoff_s", settings.restart_backoff_s)
    if last_s is None or now_s - last_s >= settings.restart_reset_s:
        backoff_s = settings.restart_backoff_s  # ran long enough since the last one: start again from the shortest delay
    else:
        backoff_s = min(settings.restart_backoff_max_s, backoff_s * 2)
    times = [t for t in history.get("times", []) if t > now_s - settings.restart_period_s]
    return {"times": [*times, now_s], "last_s": now_s, "backoff_s": backoff_s}
