"""The alert evaluator: rules judged over sliding statistics, alert lifecycles, acks, silences, escalation.

Pure: the monitor feeds it statistics documents, forecasts and operator
commands with their event time, and it returns outputs. Every transition goes
to the `alerts` stream as an AlertEvent whose id comes from a persisted
counter, so a replay of the log produces the same ids; the active set is the
`alerts` latest table, one field per fingerprint.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

from schemas.alerts import PAGING, AlertEvent, Severity, fingerprint

from processors import alert_state, matchers, metrics
from processors.alert_state import Alert, Policy, Verdict
from processors.contract import LatestOutput, Output, PartKey, Parts, StreamOutput, to_json
from processors.rules import Rule, render

ForecastLookup = Callable[[str, str], Mapping[str, Any] | None]
QUIET = Verdict(active=False)
BASELINE_FORGET_S = 3600.0  # a series unseen this long loses its learned baseline
MAX_SILENCES = 1000  # commands come from the event log: bounded, whoever sends them
MAX_COMMAND_S = 30 * 86400.0  # the longest ack or silence


@dataclass(frozen=True, slots=True, kw_only=True)
class AlertSettings:
    rules: tuple[Rule, ...]
    policy: Policy = field(default_factory=Policy)


class AlertEvaluator:
    name = "alerts"

    def __init__(self, settings: AlertSettings) -> None:
        self.settings = settings
        self._rules = {rule.name: rule for rule in settings.rules}
        self._fingerprints: dict[tuple[str, tuple[tuple[str, str], ...]], str] = {}
        # Rules by the view and series they read, so each series is visited once per evaluation.
        self._groups: dict[tuple[str, str], list[Rule]] = {}
        for rule in settings.rules:
            self._groups.setdefault((rule.window, rule.scope), []).append(rule)
        self._reset()

    def _reset(self) -> None:
        self._alerts: dict[str, Alert] = {}
        self._index: dict[tuple[str, tuple[str, ...]], str] = {}  # (rule, label values) -> fingerprint of its alert
        self._baselines: dict[tuple[str, str], list[float]] = {}  # (rule, fingerprint) -> [mean, windows, last_s]
        self._silences: dict[str, dict[str, Any]] = {}
        self._parsed: dict[str, list[tuple[str, str, Any]]] = {}
        self._events_total = 0
        self._causes: Mapping[str, str] = {}  # for the evaluation under way (derived from the health snapshot)
        self._dirty: set[PartKey] = set()
        self._deleted: set[PartKey] = set()

    # -- evaluation

    def evaluate(
        self, now_s: float, views: Mapping[str, Mapping[str, Any]], forecasts: ForecastLookup, only_component: str | None = None, causes: Mapping[str, str] | None = None
    ) -> list[Output]:
        """Judge every rule whose window is in `views`; a per-batch call passes one component's "10s" view,
        and only component rules are judged on it. `causes` names the upstream cause of each impacted component."""
        self._causes = causes or {}
        outputs: list[Output] = []
        seen: set[str] = set()
        for (window, scope), rules in self._groups.items():
            document = views.get(window)
            if document is None or (only_component is not None and scope != "component"):
                continue
            for labels, stats, processes in metrics.series(document, scope):
                series_key = tuple(labels.values())
                for rule in rules:
                    fp = self._index.get((rule.name, series_key))
                    alert = None if fp is None else self._alerts[fp]
                    verdict = self._judge(rule, alert, labels, stats, processes, document, forecasts)
                    if verdict is None:
                        if alert is None:
                            continue  # the common case: nothing wrong, nothing pending
                        verdict = self._cleared(rule, alert, labels, stats, processes)
                    if alert is None:
                        alert_labels = {**labels, **rule.labels}
                        fp = fingerprint(rule.name, alert_labels)
                        alert = self._alerts[fp] = Alert(fingerprint=fp, rule=rule.name, labels=alert_labels, state="resolved")
                        self._index[(rule.name, series_key)] = fp
                    seen.add(alert.fingerprint)
                    outputs += self._step(alert, rule, now_s, verdict)
        for fp in sorted(self._alerts.keys() - seen):
            alert = self._alerts[fp]
            its_rule = self._rules.get(alert.rule)
            if its_rule is None or its_rule.window not in views or (only_component is not None and (its_rule.scope != "component" or alert.labels.get("component") != only_component)):
                continue
            if its_rule.kind == "absence":
                continue  # its component was forgotten after an hour of silence: still absent, not recovered
            outputs += self._step(alert, its_rule, now_s, QUIET)  # its series has no data now
        if only_component is None:
            outputs += self._housekeeping(now_s)
        return outputs

    def _fingerprint(self, rule: str, labels: Mapping[str, str]) -> str:
        """Hashing costs more than judging, so fingerprints are remembered (derived, not state)."""
        key = (rule, tuple(labels.items()))
        fp = self._fingerprints.get(key)
        if fp is None:
            if len(self._fingerprints) > 100_000:
                self._fingerprints.clear()
            fp = self._fingerprints[key] = fingerprint(rule, labels)
        return fp

    def _judge(self, rule: Rule, alert: Alert | None, labels: dict[str, str], stats: Mapping[str, Any], processes: Mapping[str, Any], document: Mapping[str, Any], forecasts: ForecastLookup) -> Verdict | None:
        """The rule's verdict on one series, or None when its condition does not hold (or there is no data)."""
        active = alert is not None and alert.is_active and alert.underlying == "firing"
        held = alert.severity if alert is not None and active else None
        if rule.kind == "absence":
            body = document["components"].get(labels.get("component", ""), {})
            if not body.get("stale") or body.get("state") == "stopped" or body.get("last_seen_s") is None:
                return None
            silent_s = document["stream_time_s"] - body["last_seen_s"]
            return self._verdict(rule, labels, rule.levels[0][0], silent_s, None)
        if rule.kind == "trend":
            return self._trend(rule, labels, forecasts, held)
        value, samples = metrics.EXTRACTORS[rule.metric](stats, processes)
        if value is None or samples < rule.min_count:
            return None
        if rule.kind == "threshold":
            if not active and not rule.worse(value, rule.levels[0][1]):
                return None
            return self._graded(rule, labels, value, value, held, threshold_of=lambda limit: limit)
        baseline = self._baselines.get((rule.name, self._fingerprint(rule.name, labels)))
        if baseline is None or baseline[1] < rule.baseline_min_windows or (rule.kind == "degradation" and abs(baseline[0]) < 1e-12):
            return None  # a spike is judged against a zero baseline too (min_delta); a degradation is relative to it
        mean = baseline[0]
        if rule.kind == "spike":
            limit = max(mean * rule.factor, mean + rule.min_delta)
            recover_at = mean + (limit - mean) / 2
            if value > limit or (active and value > recover_at):
                return self._verdict(rule, labels, rule.levels[0][0], value, limit, baseline=mean)
            return None
        if abs(value - mean) < rule.min_delta:
            return None  # too small to matter in absolute terms, however large relative to a tiny baseline
        sign = 1.0 if rule.direction == "above" else -1.0
        degradation = sign * (value - mean) / abs(mean)
        return self._graded(rule, labels, degradation, value, held, threshold_of=lambda d: mean * (1 + sign * d), baseline=mean, degradation=degradation)

    def _graded(self, rule: Rule, labels: dict[str, str], judged: float, value: float, held: Severity | None, threshold_of: Callable[[float], float], **extra: float) -> Verdict | None:
        """The worst level `judged` reaches, with hysteresis for an active alert (`held` is its severity):
        it keeps its level until `judged` is back past that level's threshold by the recovery margin,
        and stays active at its mildest level until the recovery point."""
        crossed = [(severity, limit) for severity, limit in rule.levels if rule.worse(judged, limit)]
        if held is not None and rule.recovery is not None:
            margin = rule.recovery - rule.levels[0][1]  # towards the good side
            level = next((i for i, (severity, _) in enumerate(rule.levels) if severity == held), 0)
            if len(crossed) <= level and rule.worse(judged, rule.levels[level][1] + margin):
                crossed = list(rule.levels[: level + 1])
        if crossed:
            severity, limit = crossed[-1]
        else:
            return None
        return self._verdict(rule, labels, severity, value, threshold_of(limit), **extra)

    def _trend(self, rule: Rule, labels: dict[str, str], forecasts: ForecastLookup, held: Severity | None) -> Verdict | None:
        document = forecasts(metrics.series_name(labels), rule.metric)
        for crossing in (document or {}).get("thresholds", ()):
            if crossing["value"] == rule.threshold and crossing["direction"] == rule.direction:
                in_s = crossing["band_in_s" if rule.use_band else "in_s"]
                if in_s is not None and in_s <= rule.horizon_s:
                    return self._graded(rule, labels, in_s, in_s, held, threshold_of=lambda _: rule.threshold)
        return None

    def _cleared(self, rule: Rule, alert: Alert, labels: dict[str, str], stats: Mapping[str, Any], processes: Mapping[str, Any]) -> Verdict:
        """An alert's condition no longer holds: its events show the value now, not the one that fired it."""
        if rule.kind in ("absence", "trend"):
            return QUIET
        value, _ = metrics.EXTRACTORS[rule.metric](stats, processes)
        if value is None:
            return QUIET
        extra: dict[str, float] = {}
        baseline = self._baselines.get((rule.name, self._fingerprint(rule.name, labels)))
        if baseline is not None:  # a spike's baseline may be zero; a degradation needs one to divide by
            extra["baseline"] = baseline[0]
            if abs(baseline[0]) >= 1e-12:
                extra["degradation"] = (1.0 if rule.direction == "above" else -1.0) * (value - baseline[0]) / abs(baseline[0])
        return Verdict(active=False, value=value, threshold=alert.threshold, message=render(rule, labels, value=value, threshold=alert.threshold, **extra))

    def _verdict(self, rule: Rule, labels: dict[str, str], severity: Any, value: float, threshold: float | None, **extra: float) -> Verdict:
        return Verdict(active=True, severity=severity, value=value, threshold=threshold, message=render(rule, labels, value=value, threshold=threshold, **extra))

    def _step(self, alert: Alert, rule: Rule, now_s: float, verdict: Verdict) -> list[Output]:
        happened = alert_state.step(alert, now_s, verdict, rule.for_s, rule.keep_firing_for_s, self.settings.policy)
        if "pending" in happened or "firing" in happened:  # named when it begins and again when it pages
            alert.cause = self._causes.get(alert.labels.get("component", ""))
        self._dirty.add(("a", alert.fingerprint))  # timers and values move without an event, and must survive a restart
        return self._publish(alert, now_s, happened) if happened else []

    def _housekeeping(self, now_s: float) -> list[Output]:
        outputs: list[Output] = []
        for silence_id in sorted(s for s, body in self._silences.items() if now_s >= body["until_s"]):
            outputs += self._end_silence(silence_id, now_s)
        for fp in sorted(self._alerts):
            alert = self._alerts[fp]
            rule = self._rules.get(alert.rule)
            if alert.is_active and rule is None:  # its rule was removed from the rules file: nothing judges it any more
                alert.state, alert.resolved_at_s = "resolved", now_s
                outputs += self._publish(alert, now_s, ["resolved"])
                self._forget(fp)
            elif alert.is_active:
                happened = alert_state.housekeeping(alert, now_s, rule.escalate_after_s if rule else 0.0, self.settings.policy)
                outputs += self._publish(alert, now_s, happened) if happened else []
            elif rule is None or not alert.changes or now_s - alert.changes[-1] >= self.settings.policy.flap_window_s:
                self._forget(fp)  # resolved and no longer needed for flap detection
        return outputs

    def learn(self, end_s: float, document: Mapping[str, Any]) -> None:
        """Fold a closed window into the per-series baselines; frozen while the series alerts, so a fault is never learned."""
        for rule in self.settings.rules:
            if not rule.needs_baseline:
                continue
            for labels, stats, processes in metrics.series(document, rule.scope):
                value, samples = metrics.EXTRACTORS[rule.metric](stats, processes)
                if value is None or samples < rule.min_count:
                    continue
                fp = self._fingerprint(rule.name, labels)
                alerting = self._index.get((rule.name, tuple(labels.values())))
                baseline = self._baselines.setdefault((rule.name, fp), [value, 0, end_s])
                if alerting is None or not self._alerts[alerting].is_active:
                    baseline[0] += rule.baseline_alpha * (value - baseline[0])
                    baseline[1] += 1
                baseline[2] = end_s  # seen: a baseline frozen by a long fault is kept, not forgotten and relearned from the fault
                self._dirty.add(("b", rule.name, fp))
        for key in [k for k, b in self._baselines.items() if end_s - b[2] > BASELINE_FORGET_S]:
            del self._baselines[key]
            self._dirty.discard(("b", *key))
            self._deleted.add(("b", *key))

    # -- operator commands (acks and silences), from the event log

    def command(self, now_s: float, action: str, target: str, by: str, reason: str, expires_in_s: float, label_matchers: Mapping[str, Any]) -> list[Output]:
        """Apply one command; one aimed at an unknown alert or silence changes nothing (the CLI checks first)."""
        if action == "silence":
            parsed = matchers.parse(label_matchers)
            if parsed is None or (target not in self._silences and len(self._silences) >= MAX_SILENCES):
                return []
            until_s = now_s + min(expires_in_s or self.settings.policy.default_silence_s, MAX_COMMAND_S)
            self._parsed.pop(target, None)
            self._silences[target] = {"matchers": dict(label_matchers), "until_s": until_s, "by": by, "reason": reason, "created_s": now_s}
            self._dirty.add(("s", target))
            return [LatestOutput("silences", target, to_json(self._silences[target])), *self._resilence(now_s)]
        if action == "expire_silence":
            return self._end_silence(target, now_s) if target in self._silences else []
        alert = self._alerts.get(target)
        if alert is None or not alert.is_active:
            return []
        if action == "ack":
            alert.acked_by, alert.ack_reason = by or "unknown", reason
            alert.ack_until_s = now_s + min(expires_in_s or self.settings.policy.default_ack_s, MAX_COMMAND_S)
            return self._publish(alert, now_s, ["acked"])
        if alert.acked_by is None:
            return []
        alert.acked_by = alert.ack_reason = alert.ack_until_s = None
        alert.escalated_at_s = now_s  # unacknowledged from now: the escalation clock restarts
        return self._publish(alert, now_s, ["unacked"])

    def _end_silence(self, silence_id: str, now_s: float) -> list[Output]:
        del self._silences[silence_id]
        self._parsed.pop(silence_id, None)
        self._dirty.discard(("s", silence_id))
        self._deleted.add(("s", silence_id))
        return [LatestOutput("silences", silence_id, None), *self._resilence(now_s)]

    def _resilence(self, now_s: float) -> list[Output]:
        """Re-match every active alert against the silences; announce the ones whose status changed."""
        outputs: list[Output] = []
        for fp in sorted(self._alerts):
            alert = self._alerts[fp]
            silenced_by = self._matching_silences(alert)
            if alert.is_active and bool(silenced_by) != bool(alert.silenced_by):
                alert.silenced_by = silenced_by
                outputs += self._publish(alert, now_s, ["silenced" if silenced_by else "unsilenced"])
            elif silenced_by != alert.silenced_by:
                alert.silenced_by = silenced_by
                self._dirty.add(("a", fp))
                if alert.is_active:
                    outputs.append(LatestOutput("alerts", fp, to_json(public(alert))))
        return outputs

    def _matching_silences(self, alert: Alert) -> tuple[str, ...]:
        labels = {**alert.labels, "alertname": alert.rule, "rule": alert.rule, "severity": alert.severity}
        return tuple(sid for sid in sorted(self._silences) if matchers.matches(self._parsed_silence(sid), labels))

    def _parsed_silence(self, silence_id: str) -> list[tuple[str, str, Any]]:
        """Compiled once per silence (derived, not state)."""
        parsed = self._parsed.get(silence_id)
        if parsed is None:
            parsed = self._parsed[silence_id] = matchers.parse(self._silences[silence_id]["matchers"]) or []
        return parsed

    # -- outputs

    def _publish(self, alert: Alert, now_s: float, happened: Sequence[str]) -> list[Output]:
        outputs: list[Output] = []
        alert.silenced_by = self._matching_silences(alert)
        for transition in happened:
            alert_state.remember(alert, now_s, transition)
            self._events_total += 1
            event = AlertEvent(
                event_id=f"{self._events_total:012d}-{alert.fingerprint}",
                fingerprint=alert.fingerprint,
                rule=alert.rule,
                labels=alert.labels,
                severity=alert.severity,
                state="inactive" if transition == "dropped" else alert.state,  # type: ignore[arg-type]
                transition=transition,
                value=alert.value,
                threshold=alert.threshold,
                message=alert.message if alert.cause is None else f"{alert.message} ({alert.cause})",
                at_s=now_s,
                active_since_s=alert.active_since_s,
                fired_at_s=alert.fired_at_s,
                resolved_at_s=alert.resolved_at_s,
                escalation=alert.escalation,
                acked_by=alert.acked_by,
                ack_reason=alert.ack_reason,
                ack_until_s=alert.ack_until_s,
                silenced_by=alert.silenced_by,
                notify=_pages(alert, transition),
                cause=alert.cause,
            )
            outputs.append(StreamOutput("alerts", event.to_fields()))
        self._dirty.update((("a", alert.fingerprint), ("n",)))
        outputs.append(LatestOutput("alerts", alert.fingerprint, to_json(public(alert)) if alert.is_active else None))
        if happened and happened[-1] == "dropped" and not alert.changes:
            self._forget(alert.fingerprint)  # one with recent fire/resolve changes stays, resolved, for flap detection
        return outputs

    def _forget(self, fp: str) -> None:
        alert = self._alerts.pop(fp)
        self._index.pop((alert.rule, self._series_key(alert)), None)
        self._dirty.discard(("a", fp))
        self._deleted.add(("a", fp))

    @staticmethod
    def _series_key(alert: Alert) -> tuple[str, ...]:
        """The label values of the series it judges (its rule's own labels are not part of the series)."""
        return tuple(alert.labels[k] for k in metrics.SERIES_LABELS if k in alert.labels)

    def active(self) -> list[Alert]:
        return [self._alerts[fp] for fp in sorted(self._alerts) if self._alerts[fp].is_active]

    # -- checkpoint: ("a", fingerprint) alerts, ("b", rule, fingerprint) baselines, ("s", id) silences, ("n",) the event counter

    def _part(self, key: PartKey) -> Any:
        kind = key[0]
        if kind == "a":
            return self._alerts[str(key[1])].to_wire()
        if kind == "b":
            return self._baselines[(str(key[1]), str(key[2]))]
        if kind == "s":
            return self._silences[str(key[1])]
        return self._events_total

    def take_changes(self) -> tuple[Parts, set[PartKey]]:
        written = {key: self._part(key) for key in self._dirty}
        deleted = self._deleted - written.keys()
        self._dirty, self._deleted = set(), set()
        return written, deleted

    def snapshot(self) -> Parts:
        keys: list[PartKey] = [("n",), *(("a", fp) for fp in self._alerts), *(("b", *k) for k in self._baselines), *(("s", s) for s in self._silences)]
        return {key: self._part(key) for key in keys}

    def restore(self, parts: Mapping[PartKey, Any]) -> None:
        self._reset()
        for key, value in sorted(parts.items(), key=lambda kv: tuple(map(str, kv[0]))):
            kind = key[0]
            if kind == "a":
                alert = self._alerts[str(key[1])] = Alert.from_wire(value)
                self._index[(alert.rule, self._series_key(alert))] = alert.fingerprint
            elif kind == "b":
                self._baselines[(str(key[1]), str(key[2]))] = list(value)
            elif kind == "s":
                self._silences[str(key[1])] = dict(value)
            elif kind == "n":
                self._events_total = int(value)


def _pages(alert: Alert, transition: str) -> bool:
    """Whether a transition pages: not while silenced, not while pending, and while flapping only its own reminders."""
    if transition not in PAGING or alert.silenced_by or alert.state == "pending":
        return False
    return alert.state != "flapping" or transition in ("flapping", "settled")


def public(alert: Alert) -> dict[str, Any]:
    """The active-set entry readers see (the flapping bookkeeping stays inside)."""
    wire = alert.to_wire()
    for internal in ("changes", "flap_notify_at_s", "flap_backoff_s", "clear_since_s"):
        del wire[internal]
    wire["silenced_by"] = list(alert.silenced_by)
    return wire
