"""The control channel: recommendations, control settings, operator commands and the optimizer's decisions.

The recommender appends `Recommendation`s to `{prefix}:recommendations`; the
optimizer turns them into `ControlSetting`s (one field per setting in the hash
`{prefix}:control:{component}`) and records every decision as an `Action` on
`{prefix}:actions`; operators switch the optimizer with `OptimizerCommand`s on
`{prefix}:optimizer_commands`. Each record travels as JSON in a `json` field,
with its version under `v`; `decode` refuses anything else with a ControlError.
Every setting has one `SettingSpec`, the bounds that the optimizer clamps to
and that components check again before obeying.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any, ClassVar, Final, Mapping, TypeVar

from schemas.errors import SchemaError


class ControlError(SchemaError):
    """A control record that is malformed, of an unknown version, or out of bounds."""


@dataclass(frozen=True, slots=True)
class SettingSpec:
    """An integer setting's hard bounds and the value a component uses when none is set."""

    name: str
    minimum: int
    maximum: int
    default: int

    def check(self, value: object) -> int:
        if type(value) is not int:
            raise ControlError(f"{self.name} must be an integer, got {value!r}")
        if not self.minimum <= value <= self.maximum:
            raise ControlError(f"{self.name}={value} is outside {self.minimum}..{self.maximum}")
        return value

    def clamp(self, value: float) -> int:
        return int(min(self.maximum, max(self.minimum, value)))


SETTINGS: Final[dict[str, SettingSpec]] = {
    spec.name: spec
    for spec in (
        SettingSpec("concurrency", 1, 64, 2),  # worker processes or threads of a stage
        SettingSpec("cache_size", 16, 1_000_000, 256),  # entries
        SettingSpec("batch_size", 1, 10_000, 64),  # items per unit of work
        SettingSpec("restart_generation", 0, 2**31 - 1, 0),  # a component restarts when this rises
    )
}

KINDS: Final = ("grow_cache", "shrink_cache", "raise_concurrency", "lower_concurrency", "restart_component", "reduce_batch_size")
PRIORITIES: Final = ("low", "medium", "high", "critical")  # in rising order
DECISIONS: Final = ("applied", "dry_run", "skipped", "verified", "rolled_back", "mode_changed")
MODES: Final = ("enabled", "dry_run", "disabled")  # disabled is the kill switch: no control key is written
# Faults the demo pipeline can be told to suffer (`pipepulse fault`), through the `Names.demo_faults` hash.
DEMO_FAULTS: Final = ("slow_parse", "error_burst", "memory_growth", "crash_worker", "throttle")


@dataclass(frozen=True, slots=True, kw_only=True)
class Recommendation:
    """Advice about one setting of one component, valid until `expires_at_s` (event time).

    `proposed` is the value advised; None for a restart, whose new generation the optimizer picks.
    """

    VERSION: ClassVar[int] = 1
    recommendation_id: str
    kind: str
    component: str
    setting: str
    current: int | None
    proposed: int | None
    reason: str
    expected_effect: str
    priority: str
    confidence: float
    issued_at_s: float
    expires_at_s: float
    evidence: Mapping[str, float] = field(default_factory=dict)

    def _validate(self) -> None:
        _text("recommendation_id", "component", "reason", "expected_effect", record=self)
        _one_of("kind", self.kind, KINDS)
        _one_of("priority", self.priority, PRIORITIES)
        spec = _spec(self.setting)
        if (self.kind == "restart_component") != (self.setting == "restart_generation"):
            raise ControlError(f"{self.kind} cannot be about {self.setting}: restarts, and only they, are about restart_generation")
        if (self.proposed is None) != (self.kind == "restart_component"):
            raise ControlError(f"{self.kind} must {'not ' if self.kind == 'restart_component' else ''}propose a value")
        if self.current is not None:
            spec.check(self.current)  # what the component reports it uses: within the bounds, or not a recommendation
        if self.proposed is not None and type(self.proposed) is not int:
            raise ControlError(f"proposed must be an integer, got {self.proposed!r}")  # out of bounds is allowed: the optimizer clamps
        if not isinstance(self.confidence, (int, float)) or not 0.0 <= self.confidence <= 1.0:
            raise ControlError(f"confidence {self.confidence} is outside 0..1")
        if not isinstance(self.evidence, Mapping) or not all(isinstance(k, str) for k in self.evidence):
            raise ControlError("evidence must map names to numbers")
        _finite(self.issued_at_s, self.expires_at_s, *self.evidence.values())


@dataclass(frozen=True, slots=True, kw_only=True)
class ControlSetting:
    """A value a component should use, who set it and why, and until when it holds."""

    VERSION: ClassVar[int] = 1
    component: str
    setting: str
    value: int
    version: int  # rises with every change of this setting, so a component never goes back to an older value
    issued_by: str
    recommendation_id: str | None
    issued_at_s: float
    expires_at_s: float

    def _validate(self) -> None:
        _text("component", "issued_by", record=self)
        _spec(self.setting).check(self.value)
        if type(self.version) is not int:
            raise ControlError(f"version must be an integer, got {self.version!r}")
        _finite(self.issued_at_s, self.expires_at_s)


@dataclass(frozen=True, slots=True, kw_only=True)
class OptimizerCommand:
    """An operator switching the optimizer: `disabled` is the global kill switch."""

    VERSION: ClassVar[int] = 1
    mode: str
    by: str
    reason: str
    at_s: float

    def _validate(self) -> None:
        _text("by", "reason", record=self)
        _one_of("mode", self.mode, MODES)
        _finite(self.at_s)


@dataclass(frozen=True, slots=True, kw_only=True)
class Action:
    """One decision of the optimizer, applied or not, with its reason: the audit trail."""

    VERSION: ClassVar[int] = 1
    action_id: str
    decision: str
    reason: str
    at_s: float
    component: str = ""
    setting: str = ""
    recommendation_id: str | None = None
    old_value: int | None = None
    new_value: int | None = None
    version: int | None = None
    evidence: Mapping[str, Any] = field(default_factory=dict)

    def _validate(self) -> None:
        _one_of("decision", self.decision, DECISIONS)
        _finite(self.at_s)


Record = TypeVar("Record", Recommendation, ControlSetting, OptimizerCommand, Action)


def encode(record: Recommendation | ControlSetting | OptimizerCommand | Action) -> str:
    """Deterministic JSON (sorted keys, no NaN) with the record's version under `v`."""
    record._validate()
    return json.dumps({**asdict(record), "v": record.VERSION}, sort_keys=True, separators=(",", ":"), allow_nan=False)


def decode(kind: type[Record], raw: str | bytes | None) -> Record:
    """The inverse of `encode`; anything else, including out-of-bounds values, is a ControlError."""
    try:
        body = json.loads(raw)  # type: ignore[arg-type]
        if not isinstance(body, dict) or body.pop("v", None) != kind.VERSION:
            raise ValueError(f"not a version {kind.VERSION} {kind.__name__}")
        unknown = body.keys() - {f.name for f in fields(kind)}
        if unknown:
            raise ValueError(f"unknown fields {sorted(unknown)}")
        record = kind(**body)
        record._validate()
    except (TypeError, ValueError, AttributeError) as exc:  # AttributeError: a field of the wrong shape
        raise ControlError(f"{kind.__name__}: {exc}: {str(raw)[:200]}") from exc
    return record


def _text(*names: str, record: object) -> None:
    for name in names:
        if not isinstance(getattr(record, name), str):
            raise ControlError(f"{name} must be text, got {getattr(record, name)!r}")


def _one_of(what: str, value: object, allowed: tuple[str, ...]) -> None:
    if not isinstance(value, str) or value not in allowed:
        raise ControlError(f"{what} {value!r} is not one of {', '.join(allowed)}")


def _spec(setting: str) -> SettingSpec:
    spec = SETTINGS.get(setting) if isinstance(setting, str) else None
    if spec is None:
        raise ControlError(f"unknown setting {setting!r} (known: {', '.join(SETTINGS)})")
    return spec


def _finite(*values: float) -> None:
    if not all(isinstance(v, (int, float)) and math.isfinite(v) for v in values):
        raise ControlError(f"times and figures must be finite numbers, got {values}")
