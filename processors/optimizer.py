"""The optimizer: turns recommendations into bounded control settings, checks their effect, undoes harm.

Pure, driven by the runtime from three streams: operator commands (the mode:
enabled, dry_run, or disabled, the kill switch), health snapshots (its clock and
its evidence) and recommendations. Every decision, applied or not, goes to the
`actions` stream with its reason. After a change it watches the component's
health for `verify_s` and rolls the change back if health dropped by
`worse_by_points`. Settings expire unless renewed, so if the optimizer dies the
components return to their own defaults.
"""

from __future__ import annotations

import json
import math
from statistics import fmean
from typing import Any, Mapping, Sequence, TypeGuard

from schemas.control import SETTINGS, Action, ControlError, ControlSetting, OptimizerCommand, Recommendation, decode, encode

from processors import control_policy as policy
from processors.contract import ControlOutput, Item, LatestOutput, Output, PartKey, Parts, RecordItem, StreamOutput, to_json
from processors.control_policy import OptimizerSettings

ISSUER = "optimizer"
STREAMS = ("optimizer_commands", "health", "recommendations")  # commands first: a kill switch takes effect before the advice read with it


class Optimizer:
    name = "optimizer"
    _mode: str
    _now_s: float  # event time: the newest time seen in any input
    _actions_total: int
    _settings: dict[str, dict[str, Any]]  # "component/setting" -> value, version, expiry, verification, holds
    _restarts: dict[str, dict[str, Any]]
    _proposals: dict[str, list[tuple[float, int]]]  # recent proposals per setting, for scale-down stabilization
    _history: dict[str, list[list[Any]]]  # component -> recent [at_s, {factor: points}]
    _changed: set[PartKey]

    def __init__(self, settings: OptimizerSettings = OptimizerSettings()) -> None:
        self.settings = settings
        self.restore({})

    # -- input

    def apply(self, items: Sequence[Item]) -> list[Output]:
        outputs: list[Output] = []
        for item in items:
            if isinstance(item, RecordItem):
                outputs += self._record(item)
        return outputs

    def _record(self, item: RecordItem) -> list[Output]:
        raw = item.fields.get("json")
        try:
            if item.stream == "optimizer_commands":
                return self._command(decode(OptimizerCommand, raw))
            if item.stream == "recommendations":
                return self._recommendation(decode(Recommendation, raw))
        except ControlError as exc:
            return self._act("skipped", f"malformed {item.stream} entry {item.entry_id}: {exc}", evidence={"entry_id": item.entry_id})
        if item.stream == "health":
            return self._health(raw)
        return []

    def _advance(self, at_s: float) -> None:
        if math.isfinite(at_s) and at_s > self._now_s:
            self._now_s = at_s
            self._changed.add(("now",))

    def _command(self, command: OptimizerCommand) -> list[Output]:
        # The sender's clock is not the stream's: it may run ahead, and time only moves forward, so it moves nothing.
        if not math.isfinite(self._now_s):
            self._advance(command.at_s)
        old, self._mode = self._mode, command.mode
        self._changed.add(("mode",))
        return self._act("mode_changed", f"{old} -> {command.mode} by {command.by}: {command.reason}", evidence={"from": old, "to": command.mode}) + [self._status()]

    # -- recommendations

    def _recommendation(self, rec: Recommendation) -> list[Output]:
        self._advance(rec.issued_at_s)
        now = self._now_s
        about: dict[str, Any] = {"component": rec.component, "setting": rec.setting, "recommendation_id": rec.recommendation_id}
        if rec.expires_at_s <= now:
            return self._act("skipped", f"expired: the advice ran out at {rec.expires_at_s:.3f}", **about)
        if self._mode == "disabled":
            return self._act("skipped", "kill_switch: the optimizer is disabled", **about)
        key = f"{rec.component}/{rec.setting}"
        held = self._settings.get(key, {})
        current = held["value"] if held and held["expires_at_s"] > now else rec.current
        spec = SETTINGS[rec.setting]
        current = spec.default if current is None else spec.clamp(current)
        about["old_value"] = current
        if rec.kind == "restart_component":
            refused = policy.restart_verdict(now, self._restarts.get(rec.component, {}), self.settings)
            if refused:
                return self._act("skipped", refused, **about)
            # A generation only ever rises, even past an expired setting: the component restarts when it sees a higher one.
            generation = max(current, held.get("value", 0), rec.current or 0) + 1
            if generation > spec.maximum:
                return self._act("skipped", f"at_bound: restart generation {generation} is past {spec.maximum}", **about)
            return self._change(key, rec, current, generation, "restart requested", verify=False)
        proposed = spec.clamp(current if rec.proposed is None else rec.proposed)  # the schema allows None only for restarts
        if held.get("verify"):
            return self._act("skipped", "verifying: the previous change of this setting is still being watched", **about)
        if now < held.get("changed_at_s", -math.inf) + self.settings.cooldown_s:
            return self._act("skipped", f"cooldown: changed at {held['changed_at_s']:.3f}, next change after {self.settings.cooldown_s:g} s", **about)
        direction = "up" if proposed > current else "down"
        hold = held.get("hold", {}).get(direction)
        if hold is not None and now < hold[0]:
            return self._act("skipped", f"{hold[1]}: no change {direction} until {hold[0]:.3f}", **about)
        recent = [(t, v) for t, v in self._proposals.get(key, []) if t > now - self.settings.scale_down_stabilization_s]
        self._proposals[key] = [*recent, (now, proposed)][-64:]
        self._changed.add(("proposals", key))
        target = policy.rate_limited(current, policy.stabilized(current, proposed, recent), self.settings)
        if target == current or policy.within_tolerance(current, target, self.settings.tolerance):
            return self._act("skipped", f"within_tolerance: {current} -> {target} is under {self.settings.tolerance:.0%}", **about, new_value=target)
        reason = f"{rec.kind}: {rec.reason}" + ("" if target == rec.proposed else f" (proposed {rec.proposed}, limited to {target})")
        return self._change(key, rec, current, target, reason, verify=True)

    def _change(self, key: str, rec: Recommendation, old: int, new: int, reason: str, verify: bool) -> list[Output]:
        about: dict[str, Any] = {"component": rec.component, "setting": rec.setting, "recommendation_id": rec.recommendation_id, "old_value": old, "new_value": new}
        if self._mode == "dry_run":
            return self._act("dry_run", f"would apply: {reason}", **about)
        now = self._now_s
        held = self._settings.get(key, {})
        version = held.get("version", 0) + 1
        baseline = self._health_around(rec.component, rec.setting, now - self.settings.verify_s, now)
        direction = "up" if new > old else "down"
        # After a step down, no step back up for a while (AIMD probing would flip-flop); a step down is never held:
        # shedding load or memory is the safe direction, and an overload must be answered at once.
        holds = {**held.get("hold", {}), "up": [now + self.settings.reversal_hold_s, "held_after_change"]} if verify and direction == "down" else held.get("hold", {})
        self._settings[key] = {
            **held, "component": rec.component, "setting": rec.setting, "value": new, "previous": old, "version": version, "changed_at_s": now,
            "expires_at_s": now + self.settings.setting_ttl_s, "recommendation_id": rec.recommendation_id,
            "verify": {"due_s": now + self.settings.verify_s, "before": baseline, "direction": direction} if verify else None, "hold": holds,
        }  # fmt: skip
        self._changed.add(("setting", key))
        if rec.kind == "restart_component":
            self._restarts[rec.component] = policy.record_restart(now, self._restarts.get(rec.component, {}), self.settings)
            self._changed.add(("restart", rec.component))
        return [self._write(key), *self._act("applied", reason, **about, version=version, evidence={"points_before": baseline}), self._status()]

    def _write(self, key: str) -> ControlOutput:
        s = self._settings[key]
        setting = ControlSetting(
            component=s["component"], setting=s["setting"], value=s["value"], version=s["version"], issued_by=ISSUER,
            recommendation_id=s["recommendation_id"], issued_at_s=s["changed_at_s"], expires_at_s=s["expires_at_s"],
        )  # fmt: skip
        return ControlOutput(s["component"], s["setting"], encode(setting))

    # -- health: the clock, verification, renewal

    def _health(self, raw: str | None) -> list[Output]:
        snapshot = _json_object(raw)
        at_s, components = snapshot.get("at_s"), snapshot.get("components")
        if not _finite_number(at_s) or not isinstance(components, dict):
            return self._act("skipped", "malformed health snapshot (at_s or components)")
        self._advance(float(at_s))
        for name, body in components.items():
            factors = body.get("factors") if isinstance(body, dict) and body.get("score") is not None else None
            if isinstance(factors, dict):
                points = {f: float(part["points"]) for f, part in factors.items() if f in policy.ALL_FACTORS and isinstance(part, dict) and _finite_number(part.get("points"))}
                history = [p for p in self._history.get(name, []) if p[0] > self._now_s - self.settings.history_s]
                self._history[name] = [*history, [float(at_s), points]]
                self._changed.add(("history", name))
        outputs: list[Output] = []
        for key in sorted(self._settings):
            outputs += self._verify(key) + self._renew(key)
        if outputs:
            outputs.append(self._status())  # a verification ended or a setting was renewed: the state readers see follows
        return outputs

    def _health_around(self, component: str, setting: str, from_s: float, to_s: float) -> float | None:
        """The mean of the health points a setting can move, over the component's snapshots in [from_s, to_s]."""
        factors = policy.RELEVANT_FACTORS.get(setting, policy.ALL_FACTORS)
        scores = [sum(points.get(f, 0.0) for f in factors) for at_s, points in self._history.get(component, []) if from_s <= at_s <= to_s]
        return round(fmean(scores), 3) if scores else None

    def _verify(self, key: str) -> list[Output]:
        s = self._settings[key]
        check = s.get("verify")
        if not check or self._now_s < check["due_s"]:
            return []
        s["verify"] = None
        self._changed.add(("setting", key))
        # The second half of the window: the component has had time to settle on the new value.
        after = self._health_around(s["component"], s["setting"], check["due_s"] - self.settings.verify_s / 2, self._now_s)
        before = check["before"]
        factors = "+".join(policy.RELEVANT_FACTORS.get(s["setting"], policy.ALL_FACTORS))
        evidence = {"factors": factors, "points_before": before, "points_after": after}
        about = {"component": s["component"], "setting": s["setting"], "recommendation_id": s["recommendation_id"], "evidence": evidence}
        if before is None or after is None or after > before - self.settings.worse_by_points:
            why = "no health data on both sides" if before is None or after is None else f"{factors} points {before:.1f} -> {after:.1f}"
            return self._act("verified", f"kept {s['setting']}={s['value']}: {why}", **about, new_value=s["value"], version=s["version"])
        reason = f"{factors} points fell {before:.1f} -> {after:.1f} (more than {self.settings.worse_by_points:g}) after {s['setting']} went {s['previous']} -> {s['value']}"
        if self._mode != "enabled":  # nothing is written, so nothing changes: the setting in force stays what it is
            decision, what = ("dry_run", "would roll back") if self._mode == "dry_run" else ("skipped", "kill_switch: rollback not written")
            return self._act(decision, f"{what}: {reason}", **about, old_value=s["value"], new_value=s["previous"])
        old, s["value"] = s["value"], s["previous"]
        s["version"] += 1
        s["changed_at_s"] = self._now_s
        s["expires_at_s"] = self._now_s + self.settings.setting_ttl_s
        s["hold"] = {**s.get("hold", {}), check["direction"]: [self._now_s + self.settings.rollback_hold_s, "held_after_rollback"]}
        return [self._write(key), *self._act("rolled_back", reason, **about, old_value=old, new_value=s["value"], version=s["version"]), self._status()]

    def _renew(self, key: str) -> list[Output]:
        s = self._settings[key]
        if self._mode != "enabled" or s["expires_at_s"] - self._now_s > self.settings.setting_ttl_s / 2:
            return []  # dry run and the kill switch write nothing, renewals included: settings then fade out
        if s["expires_at_s"] <= self._now_s:
            return []  # it ran out (the components are back on their defaults): not brought back by a renewal
        s["expires_at_s"] = self._now_s + self.settings.setting_ttl_s  # same value and version, later expiry
        self._changed.add(("setting", key))
        return [self._write(key)]

    # -- outputs

    def _act(self, decision: str, reason: str, **fields: Any) -> list[Output]:
        self._actions_total += 1
        self._changed.add(("actions_total",))
        action = Action(action_id=f"a{self._actions_total}", decision=decision, reason=reason, at_s=self._now_s if math.isfinite(self._now_s) else 0.0, **fields)
        return [StreamOutput("actions", {"id": action.action_id, "json": encode(action)})]

    def _status(self) -> LatestOutput:
        settings = {k: {f: s[f] for f in ("value", "version", "expires_at_s", "changed_at_s")} | {"verifying": bool(s.get("verify"))} for k, s in sorted(self._settings.items())}
        return LatestOutput("optimizer", "state", to_json({"mode": self._mode, "settings": settings, "restarts": self._restarts, "at_s": self._now_s if math.isfinite(self._now_s) else None}))

    # -- checkpoint

    def _tables(self) -> dict[str, Mapping[str, Any]]:
        return {"setting": self._settings, "restart": self._restarts, "proposals": self._proposals, "history": self._history}

    def _part(self, key: PartKey) -> Any:
        if len(key) == 1:
            return {"mode": self._mode, "now": self._now_s, "actions_total": self._actions_total}[str(key[0])]
        return self._tables()[str(key[0])][str(key[1])]

    def take_changes(self) -> tuple[Parts, set[PartKey]]:
        written = {key: self._part(key) for key in self._changed}
        self._changed = set()
        return written, set()

    def snapshot(self) -> Parts:
        parts: Parts = {("mode",): self._mode, ("now",): self._now_s, ("actions_total",): self._actions_total}
        for kind, table in self._tables().items():
            parts.update({(kind, key): value for key, value in table.items()})
        return parts

    def restore(self, parts: Mapping[PartKey, Any]) -> None:
        self._mode = parts.get(("mode",), self.settings.mode)
        self._now_s = parts.get(("now",), -math.inf)
        self._actions_total = parts.get(("actions_total",), 0)
        tables: dict[str, dict[str, Any]] = {"setting": {}, "restart": {}, "proposals": {}, "history": {}}
        for key, value in parts.items():
            if key[0] in tables:
                tables[str(key[0])][str(key[1])] = value
        self._settings, self._restarts = tables["setting"], tables["restart"]
        self._proposals = {k: [tuple(p) for p in v] for k, v in tables["proposals"].items()}
        self._history = tables["history"]
        self._changed = set()


def _finite_number(value: object) -> TypeGuard[float]:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _json_object(raw: str | None) -> dict[str, Any]:
    try:
        value = json.loads(raw or "")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}
