"""Alert rules: the shipped defaults plus a user's TOML file, validated into frozen Rule objects.

A user file replaces a shipped rule by naming it, disables one with
`enabled = false`, or adds new ones; anything malformed is a RuleError that
names the rule and the field, raised at start-up rather than at 3 a.m.
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Final, Literal, Mapping

from schemas.alerts import SEVERITIES, Severity

from processors.errors import ProcessorError
from processors.metrics import FORECAST_METRICS

Kind = Literal["threshold", "degradation", "spike", "trend", "absence"]
Scope = Literal["pipeline", "component", "operation"]
Direction = Literal["above", "below"]
KINDS: Final = ("threshold", "degradation", "spike", "trend", "absence")
SCOPES: Final = ("pipeline", "component", "operation")
WINDOWS: Final = ("10s", "1m")
# What each metric is read from; the extraction lives in processors.metrics.
METRICS: Final = frozenset(
    {
        "error_rate",
        "success_rate",
        "latency_mean_ms",
        "latency_p50_ms",
        "latency_p90_ms",
        "latency_p95_ms",
        "latency_p99_ms",
        "latency_max_ms",
        "cache_hit_rate",
        "efficiency",
        "throughput_per_s",
        "rss_bytes",
        "cpu_percent",
    }
)


class RuleError(ProcessorError):
    """A rules file that cannot be used; the message names the file, the rule and the field."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Rule:
    """One alert rule. `levels` maps severity to threshold, ordered from the mildest to the worst."""

    name: str
    kind: Kind
    scope: Scope
    metric: str = ""
    direction: Direction = "above"
    levels: tuple[tuple[Severity, float], ...]
    recovery: float | None = None  # hysteresis: an active alert clears only past this (Datadog's recovery threshold)
    for_s: float = 0.0
    keep_firing_for_s: float = 0.0
    min_count: int = 0
    window: str = "10s"
    message: str = "{rule} on {series}: {value} (threshold {threshold})"
    escalate_after_s: float = 900.0
    # degradation and spike: the per-series baseline, an EWMA over closed windows that is frozen while the alert is active
    baseline_alpha: float = 0.1
    baseline_min_windows: int = 6
    factor: float = 3.0
    min_delta: float = 0.0
    # trend: the forecast crosses `threshold` within `horizon_s`; levels are then the longest time to the crossing per severity
    threshold: float = 0.0
    horizon_s: float = 0.0
    use_band: bool = False
    labels: Mapping[str, str] = field(default_factory=dict)

    def worse(self, value: float, limit: float) -> bool:
        """Is `value` past `limit` in this rule's bad direction? Strictly, as Prometheus's `>` and Datadog's
        "> T recovers at <= R": an error rate of exactly 5 % does not break a 5 % limit."""
        if self.kind == "trend":
            return value <= limit  # levels of a trend rule are times to the crossing: sooner is worse
        return value > limit if self.direction == "above" or self.kind in ("degradation", "spike") else value < limit

    @property
    def needs_baseline(self) -> bool:
        return self.kind in ("degradation", "spike")


def load_rules(user_file: Path | None = None) -> tuple[Rule, ...]:
    """The shipped defaults, overridden and extended by `user_file`."""
    shipped = resources.files("processors").joinpath("default_rules.toml").read_text()
    merged: dict[str, tuple[str, dict[str, Any]]] = {body["name"]: ("default_rules.toml", body) for body in _rule_tables(shipped, "default_rules.toml")}
    if user_file is not None:
        try:
            text = user_file.read_text()
        except OSError as exc:
            raise RuleError(f"cannot read rules file {user_file}: {exc}") from exc
        for body in _rule_tables(text, str(user_file)):
            merged[body["name"]] = (str(user_file), body)
    return tuple(parse_rule(body, origin) for origin, body in merged.values() if body.get("enabled", True) is not False)


def _rule_tables(text: str, origin: str) -> list[dict[str, Any]]:
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise RuleError(f"{origin}: {exc}") from exc
    tables = document.get("rules", [])
    if not isinstance(tables, list) or not all(isinstance(t, dict) and isinstance(t.get("name"), str) and t["name"] for t in tables):
        raise RuleError(f"{origin}: expected [[rules]] tables, each with a name")
    return tables


_FIELDS: Final = frozenset(Rule.__dataclass_fields__) | {"enabled"}


def parse_rule(body: Mapping[str, Any], origin: str = "rules") -> Rule:
    name = body.get("name", "?")

    def fail(what: str) -> RuleError:
        return RuleError(f"{origin}: rule {name!r}: {what}")

    unknown = set(body) - _FIELDS
    if unknown:
        raise fail(f"unknown field(s) {sorted(unknown)}")
    _check_types(body, fail)
    values = {k: v for k, v in body.items() if k != "enabled"}
    if values.get("kind") not in KINDS:
        raise fail(f"kind must be one of {KINDS}, got {values.get('kind')!r}")
    if values.get("scope", "component") not in SCOPES:
        raise fail(f"scope must be one of {SCOPES}")
    values.setdefault("scope", "component")
    if values["kind"] != "absence" and values.get("metric") not in METRICS:
        raise fail(f"metric must be one of {sorted(METRICS)}, got {values.get('metric')!r}")
    if values.get("direction", "above") not in ("above", "below"):
        raise fail("direction must be 'above' or 'below'")
    if values.get("window", "10s") not in WINDOWS:
        raise fail(f"window must be one of {WINDOWS}")
    levels = values.get("levels")
    if not isinstance(levels, dict) or not levels or not set(levels) <= set(SEVERITIES):
        raise fail(f"levels must map some of {SEVERITIES} to numbers")
    values["levels"] = tuple((severity, _number(levels[severity], fail, f"levels.{severity}")) for severity in SEVERITIES if severity in levels)
    for key in ("recovery", "for_s", "keep_firing_for_s", "escalate_after_s", "baseline_alpha", "factor", "min_delta", "threshold", "horizon_s"):
        if key in values:
            values[key] = _number(values[key], fail, key)
            if key not in ("recovery", "threshold") and values[key] < 0:
                raise fail(f"{key} must not be negative")
    try:
        rule = Rule(**values)
    except TypeError as exc:
        raise fail(str(exc)) from exc
    _check_order(rule, fail)
    try:
        render(rule, {"component": "c", "operation": "o"}, value=1.0, threshold=1.0, baseline=1.0)
    except (KeyError, ValueError, IndexError) as exc:
        raise fail(f"message {rule.message!r} does not format: {exc!r}") from exc
    return rule


def _check_order(rule: Rule, fail: Any) -> None:
    """Worse severities must have worse thresholds, and the recovery must sit on the good side (or hysteresis inverts)."""
    limits = [limit for _, limit in rule.levels]
    for milder, worse in zip(limits, limits[1:]):
        if not rule.worse(worse, milder):
            raise fail("levels must get worse from warning to critical")
    if rule.recovery is not None and rule.worse(rule.recovery, limits[0]):
        raise fail(f"recovery {rule.recovery} lies past the first threshold {limits[0]}")
    if rule.kind == "trend" and rule.horizon_s <= 0:
        raise fail("a trend rule needs horizon_s > 0")
    if rule.kind == "trend" and (rule.metric not in FORECAST_METRICS or rule.scope == "operation"):
        raise fail(f"a trend rule watches a pipeline or component forecast of one of {FORECAST_METRICS}")
    if rule.kind == "absence" and rule.scope != "component":
        raise fail("an absence rule has component scope")
    if rule.kind == "spike" and rule.direction != "above":
        raise fail("a spike rule looks for a rise (direction 'above')")
    if not 0 < rule.baseline_alpha <= 1 or rule.factor < 1:
        raise fail("baseline_alpha must be in (0, 1] and factor at least 1")


def _check_types(body: Mapping[str, Any], fail: Any) -> None:
    """TOML is typed: a count given as text or a flag as a string is refused here, not at 3 a.m."""
    for key in ("min_count", "baseline_min_windows"):
        if key in body and (type(body[key]) is not int or body[key] < 0):
            raise fail(f"{key} must be a whole number, at least 0")
    for key in ("use_band", "enabled"):
        if key in body and type(body[key]) is not bool:
            raise fail(f"{key} must be true or false")
    for key in ("message", "name"):
        if key in body and type(body[key]) is not str:
            raise fail(f"{key} must be text")
    labels = body.get("labels", {})
    if not isinstance(labels, dict) or not all(type(v) is str for v in labels.values()) or set(labels) & {"component", "operation", "alertname", "severity", "rule"}:
        raise fail("labels must map names other than component, operation, alertname, severity and rule to text")


def _number(value: object, fail: Any, key: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise fail(f"{key} must be a finite number, got {value!r}")
    return float(value)


def render(rule: Rule, labels: Mapping[str, str], **numbers: float | None) -> str:
    """The alert message with its placeholders filled; a missing number renders as "n/a"."""
    series = ",".join(f"{k}={v}" for k, v in sorted(labels.items())) or "pipeline"
    context: dict[str, Any] = {"rule": rule.name, "series": series, "component": labels.get("component", "pipeline"), "operation": labels.get("operation", "")}
    context.update(dict.fromkeys(("value", "threshold", "baseline", "degradation"), math.nan))  # placeholders a message may use
    for key, number in numbers.items():
        context[key] = number if number is not None else math.nan
    return rule.message.format_map(context)
