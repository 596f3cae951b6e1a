"""The alert event: what the alert evaluator appends to `{prefix}:alerts` for every transition.

Producers (the evaluator) and consumers (the subscriber, the webhook forwarder,
the CLI, dashboards) share this one record. On the stream an entry has two
fields: `id` (the alert event id, unique and stable across replays, which is
what consumers deduplicate by) and `json` (the record below).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from typing import ClassVar, Final, Literal, Mapping

from schemas.errors import SchemaError

Severity = Literal["warning", "error", "critical"]
SEVERITIES: Final = ("warning", "error", "critical")  # in rising order
AlertState = Literal["inactive", "pending", "firing", "flapping", "resolved"]
# What happened, in a word: a state change, or a change to a firing alert that keeps its state.
TRANSITIONS: Final = frozenset(
    {
        "pending",  # the condition became true; waiting for `for`
        "dropped",  # a pending alert whose condition cleared before `for` (no notification, as in Prometheus)
        "firing",
        "severity_changed",  # escalated or de-escalated in place: the same alert, a new severity
        "resolved",
        "flapping",  # too many state changes: notifications back off until it settles
        "settled",  # no longer flapping; `state` says whether it settled firing or resolved
        "acked",
        "unacked",  # by command, by expiry, or automatically because the alert worsened
        "silenced",
        "unsilenced",
        "escalated",  # unacknowledged for too long, or worsened while acknowledged
    }
)
# The transitions that page someone (when `notify` is True); acks, silences and pending changes are recorded only.
PAGING: Final = frozenset({"firing", "severity_changed", "resolved", "flapping", "settled", "escalated"})


@dataclass(frozen=True, slots=True, kw_only=True)
class AlertEvent:
    """One transition of one alert. Times are event time (seconds since the epoch); None means "not yet"."""

    VERSION: ClassVar[int] = 2
    READS: ClassVar[frozenset[int]] = frozenset({1, 2})  # v1 had no `cause`
    event_id: str
    fingerprint: str
    rule: str
    labels: Mapping[str, str]
    severity: Severity
    state: AlertState
    transition: str
    value: float | None
    threshold: float | None
    message: str
    at_s: float
    active_since_s: float | None = None
    fired_at_s: float | None = None
    resolved_at_s: float | None = None
    escalation: int = 0
    acked_by: str | None = None
    ack_reason: str | None = None
    ack_until_s: float | None = None
    silenced_by: tuple[str, ...] = ()
    notify: bool = True  # False while silenced, pending or flapping (but its reminders), and for non-paging transitions
    # The upstream root cause when the alert's component depends on a failing one (v2): "A is critical", else None.
    cause: str | None = None

    @property
    def component(self) -> str:
        return self.labels.get("component", "")

    def to_fields(self) -> dict[str, str]:
        body = asdict(self)
        body["v"] = self.VERSION
        return {"id": self.event_id, "json": json.dumps(body, sort_keys=True, separators=(",", ":"), allow_nan=False)}

    @classmethod
    def from_fields(cls, fields: Mapping[bytes | str, bytes | str]) -> AlertEvent:
        """The inverse of `to_fields`, for an entry read from the stream; anything else is an AlertFormatError."""
        raw = fields.get(b"json", fields.get("json"))
        try:
            body = json.loads(raw)  # type: ignore[arg-type]
            if body.pop("v") not in cls.READS:
                raise ValueError("unknown alert event version")
            body["silenced_by"] = tuple(body.get("silenced_by", ()))
            event = cls(**body)
        except (TypeError, ValueError, KeyError, AttributeError) as exc:  # AttributeError: JSON that is not an object
            raise AlertFormatError(f"not an alert event: {str(raw)[:200]}") from exc
        if event.severity not in SEVERITIES or event.transition not in TRANSITIONS:
            raise AlertFormatError(f"alert event {event.event_id} has severity {event.severity!r}, transition {event.transition!r}")
        return event


class AlertFormatError(SchemaError):
    """An entry of the alerts stream that is not an AlertEvent of a known version."""


def fingerprint(rule: str, labels: Mapping[str, str]) -> str:
    """An alert's identity: its rule and labels, so a repeat of the same condition updates the same alert."""
    text = json.dumps([rule, sorted(labels.items())], separators=(",", ":"))
    return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()
