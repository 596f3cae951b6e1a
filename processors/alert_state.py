"""The lifecycle of one alert: inactive -> pending (`for`) -> firing -> resolved, with flapping.

Pure and clock-free: `step` takes the evaluation time and the rule's verdict
and returns what happened. A pending alert whose condition clears is dropped
(as in Prometheus); a firing one resolves only after `keep_firing_for`; one
that changes between firing and resolved too often becomes *flapping*, which
notifies with back-off (Netdata's delay multiplier) until it settles.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, Final

from schemas.alerts import SEVERITIES, Severity

HISTORY_LIMIT: Final = 20


@dataclass(frozen=True, slots=True, kw_only=True)
class Policy:
    flap_window_s: float = 600.0
    flap_changes: int = 5  # firing/resolved changes within the window that make an alert flapping
    flap_quiet_s: float = 300.0  # no change for this long and it settles
    flap_backoff_initial_s: float = 60.0
    flap_backoff_max_s: float = 3600.0
    default_ack_s: float = 3600.0
    default_silence_s: float = 7200.0
    max_escalation: int = 3


@dataclass(frozen=True, slots=True)
class Verdict:
    """A rule's judgement of one series at one instant; `active=False` includes "no data"."""

    active: bool
    severity: Severity = "warning"
    value: float | None = None
    threshold: float | None = None
    message: str = ""


@dataclass(slots=True, kw_only=True)
class Alert:
    fingerprint: str
    rule: str
    labels: dict[str, str]
    state: str = "pending"  # pending | firing | flapping | resolved
    severity: Severity = "warning"
    value: float | None = None
    threshold: float | None = None
    message: str = ""
    active_since_s: float | None = None
    fired_at_s: float | None = None
    resolved_at_s: float | None = None
    clear_since_s: float | None = None
    underlying: str = "firing"  # while flapping: what the alert would be without the flapping state
    changes: list[float] = field(default_factory=list)
    flap_notify_at_s: float = 0.0
    flap_backoff_s: float = 0.0
    escalation: int = 0
    escalated_at_s: float | None = None
    acked_by: str | None = None
    ack_reason: str | None = None
    ack_until_s: float | None = None
    silenced_by: tuple[str, ...] = ()
    cause: str | None = None  # the upstream root cause when it began (or fired): "upstream parser is critical"
    history: list[list[Any]] = field(default_factory=list)

    @property
    def is_active(self) -> bool:
        return self.state != "resolved"

    @property
    def is_firing(self) -> bool:
        """Firing for the health score and escalation: firing, or flapping while its condition holds."""
        return self.state == "firing" or (self.state == "flapping" and self.underlying == "firing")

    def to_wire(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_wire(cls, value: dict[str, Any]) -> Alert:
        value = dict(value)
        value["silenced_by"] = tuple(value.get("silenced_by", ()))
        return cls(**value)


def step(alert: Alert, now_s: float, verdict: Verdict, for_s: float, keep_firing_for_s: float, policy: Policy) -> list[str]:
    """Advance `alert` to `now_s` under `verdict`; returns the transitions (empty when nothing changed)."""
    happened: list[str] = []
    if verdict.value is not None:  # the value now, also when it has cleared (a resolved event says how far)
        alert.value, alert.threshold, alert.message = verdict.value, verdict.threshold, verdict.message or alert.message
    if alert.state == "resolved":
        if verdict.active:
            alert.state, alert.active_since_s, alert.severity, alert.clear_since_s = "pending", now_s, verdict.severity, None
            alert.fired_at_s = alert.resolved_at_s = None
            alert.escalation, alert.escalated_at_s = 0, None
            happened.append("pending")
    elif alert.state == "pending":
        if not verdict.active:
            alert.state = "resolved"  # dropped: never fired, so nothing to resolve; the caller forgets it
            return ["dropped"]
        alert.severity = verdict.severity  # no event: a pending alert has paged no one, and `firing` will carry it
    else:
        if verdict.active:
            alert.clear_since_s = None
            happened.extend(_set_severity(alert, verdict.severity, now_s, policy))
            if alert.state == "flapping" and alert.underlying == "resolved":
                alert.underlying = "firing"
                _change(alert, now_s, policy)
        else:
            if alert.clear_since_s is None:
                alert.clear_since_s = now_s
            if now_s - alert.clear_since_s >= keep_firing_for_s and alert.underlying == "firing":
                if alert.state == "flapping":
                    alert.underlying = "resolved"
                    _change(alert, now_s, policy)
                else:
                    alert.state, alert.resolved_at_s = "resolved", now_s
                    alert.acked_by = alert.ack_reason = alert.ack_until_s = None
                    happened.append("resolved")
                    happened.extend(_change(alert, now_s, policy))
    if alert.state == "pending" and now_s - (alert.active_since_s or now_s) >= for_s:
        alert.state, alert.fired_at_s, alert.underlying = "firing", now_s, "firing"
        happened = [t for t in happened if t != "pending"] + ["firing"]
        happened.extend(_change(alert, now_s, policy))
    happened.extend(_flapping_progress(alert, now_s, policy))
    if "flapping" in happened and happened[-1] == "flapping":
        happened = [t for t in happened if t not in ("firing", "resolved")]  # entering flapping replaces the page it would have sent
    return happened


def _set_severity(alert: Alert, severity: Severity, now_s: float, policy: Policy) -> list[str]:
    if severity == alert.severity:
        return []
    worse = SEVERITIES.index(severity) > SEVERITIES.index(alert.severity)
    alert.severity = severity
    happened = ["severity_changed"]
    if worse and alert.acked_by is not None:  # an ack covers what was acknowledged, not something worse
        alert.acked_by = alert.ack_reason = alert.ack_until_s = None
        happened.append("unacked")
        if alert.escalation < policy.max_escalation:
            alert.escalation += 1
            alert.escalated_at_s = now_s
            happened.append("escalated")
    return happened


def _change(alert: Alert, now_s: float, policy: Policy) -> list[str]:
    """Record a firing/resolved change; enough of them within the window make the alert flapping."""
    alert.changes = [t for t in alert.changes if now_s - t < policy.flap_window_s] + [now_s]
    if alert.state != "flapping" and len(alert.changes) >= policy.flap_changes:
        alert.underlying = "resolved" if alert.state == "resolved" else "firing"
        alert.state = "flapping"
        alert.resolved_at_s = None
        alert.flap_backoff_s = policy.flap_backoff_initial_s
        alert.flap_notify_at_s = now_s + alert.flap_backoff_s
        return ["flapping"]
    return []


def _flapping_progress(alert: Alert, now_s: float, policy: Policy) -> list[str]:
    """A flapping alert settles after a quiet period, and otherwise reminds with a doubling interval."""
    if alert.state != "flapping":
        return []
    last_change_s = alert.changes[-1] if alert.changes else now_s
    if now_s - last_change_s >= policy.flap_quiet_s:
        alert.state, alert.changes = alert.underlying, []
        if alert.state == "resolved":
            alert.resolved_at_s = now_s
        return ["settled"]
    if now_s >= alert.flap_notify_at_s and last_change_s > alert.flap_notify_at_s - alert.flap_backoff_s:
        alert.flap_backoff_s = min(alert.flap_backoff_s * 2, policy.flap_backoff_max_s)
        alert.flap_notify_at_s = now_s + alert.flap_backoff_s
        return ["flapping"]
    return []


def housekeeping(alert: Alert, now_s: float, escalate_after_s: float, policy: Policy) -> list[str]:
    """Time-driven changes: an ack that expired, and escalation of an alert left unacknowledged."""
    happened: list[str] = []
    if alert.ack_until_s is not None and now_s >= alert.ack_until_s:
        alert.acked_by = alert.ack_reason = alert.ack_until_s = None
        alert.escalated_at_s = now_s  # unacknowledged from now: the escalation clock restarts
        happened.append("unacked")
    if alert.is_firing and alert.acked_by is None and alert.escalation < policy.max_escalation and escalate_after_s > 0:
        since_s = alert.escalated_at_s if alert.escalated_at_s is not None else alert.fired_at_s
        if since_s is not None and now_s - since_s >= escalate_after_s:
            alert.escalation += 1
            alert.escalated_at_s = now_s
            happened.append("escalated")
    return happened


def remember(alert: Alert, now_s: float, transition: str) -> None:
    """Bounded per-alert history, shown with the active alert (the full history is the alerts stream)."""
    alert.history.append([now_s, transition, alert.severity])
    del alert.history[:-HISTORY_LIMIT]
