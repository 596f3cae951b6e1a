"""Where alert events go: an Alertmanager-compatible webhook, and the log.

Both are plain callables, so either (or a function calling both) is an
AlertSubscriber callback:

    forward = WebhookForwarder("http://127.0.0.1:9094/hook")
    AlertSubscriber(redis_url, forward, group="webhook", notify_only=True).run()
"""

from __future__ import annotations

import email.message
import email.utils
import http.client
import json
import logging
import random
import time
import urllib.error
import urllib.parse
import urllib.request
from datetime import datetime, timezone
from typing import Any, Callable, Final

from schemas.alerts import PAGING, AlertEvent

from emitters.errors import ConfigError, WebhookError

log = logging.getLogger("pipepulse.alerts")

# Alertmanager's "not yet ended" (Go's zero time).
ZERO_TIME: Final = "0001-01-01T00:00:00Z"
EVENT_ID_HEADER: Final = "X-Pipepulse-Event-Id"
_RETRYABLE_STATUS: Final = frozenset({429}) | frozenset(range(500, 600))


def rfc3339(at_s: float) -> str:
    """UTC with milliseconds and a `Z`, as Alertmanager receivers parse it."""
    return datetime.fromtimestamp(at_s, tz=timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def alert_status(event: AlertEvent) -> str:
    """Alertmanager knows two states: "resolved" once the alert has ended, "firing" otherwise."""
    ended = event.transition == "resolved" or event.state in ("resolved", "inactive")
    return "resolved" if ended else "firing"


def alertmanager_payload(event: AlertEvent, *, receiver: str = "pipepulse", external_url: str = "") -> dict[str, Any]:
    """The Alertmanager webhook body (version 4) for one event: one group, holding this one alert."""
    status = alert_status(event)
    labels = {**event.labels, "alertname": event.rule, "severity": event.severity}
    annotations = {
        "summary": event.message,
        "description": event.message,
        "value": "" if event.value is None else repr(event.value),
        "threshold": "" if event.threshold is None else repr(event.threshold),
        "transition": event.transition,
        "state": event.state,
        "event_id": event.event_id,
        "cause": event.cause or "",  # the upstream root cause of an impacted component
    }
    starts_at_s = next(t for t in (event.fired_at_s, event.active_since_s, event.at_s) if t is not None)
    ended_at_s = event.resolved_at_s if event.resolved_at_s is not None else event.at_s
    return {
        "version": "4",
        "groupKey": "{}:{alertname=%s}" % json.dumps(event.rule),
        "truncatedAlerts": 0,
        "status": status,
        "receiver": receiver,
        "groupLabels": {"alertname": event.rule},
        "commonLabels": labels,
        "commonAnnotations": annotations,
        "externalURL": external_url,
        "alerts": [
            {
                "status": status,
                "labels": dict(labels),
                "annotations": dict(annotations),
                "startsAt": rfc3339(starts_at_s),
                "endsAt": rfc3339(ended_at_s) if status == "resolved" else ZERO_TIME,
                "generatorURL": external_url,
                "fingerprint": event.fingerprint,
            }
        ],
    }


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A redirected POST would turn into a body-less GET that "succeeds"; treat a redirect as the answer instead."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


class WebhookForwarder:
    """Posts each paging event (see PAGING; `notify` True) as an Alertmanager webhook.

    Retries connection errors, 5xx and 429 (honouring Retry-After, up to
    `backoff_max_s`) with exponential back-off and jitter; any other 4xx is
    logged and dropped. Raises WebhookError when every attempt failed, so a
    subscriber keeps the event pending and tries again later. Each request
    carries `X-Pipepulse-Event-Id` for the receiver to deduplicate.
    """

    def __init__(
        self,
        url: str,
        *,
        timeout_s: float = 5.0,
        max_attempts: int = 6,
        backoff_initial_s: float = 0.5,
        backoff_max_s: float = 30.0,
        receiver: str = "pipepulse",
        external_url: str = "",
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
            raise ConfigError(f"webhook url must be http or https, got {url!r}")
        if max_attempts < 1:
            raise ConfigError(f"max_attempts must be at least 1, got {max_attempts}")
        if not timeout_s > 0 or backoff_initial_s < 0 or backoff_max_s < 0:
            raise ConfigError(f"timeout_s must be positive and back-offs not negative, got {timeout_s}, {backoff_initial_s}, {backoff_max_s}")
        self.url = url
        self.timeout_s = timeout_s
        self.max_attempts = max_attempts
        self.backoff_initial_s = backoff_initial_s
        self.backoff_max_s = backoff_max_s
        self.receiver = receiver
        self.external_url = external_url
        self._sleep = sleep
        self._opener = urllib.request.build_opener(_NoRedirect)
        self.posted_total = 0
        self.skipped_total = 0
        self.rejected_total = 0
        self.failed_attempts_total = 0

    def __call__(self, event: AlertEvent) -> None:
        if event.transition not in PAGING or not event.notify:
            self.skipped_total += 1
            return
        body = json.dumps(alertmanager_payload(event, receiver=self.receiver, external_url=self.external_url)).encode()
        last_error = ""
        for attempt in range(1, self.max_attempts + 1):
            status, retry_after_s, detail = self._post(body, event.event_id)
            if status is not None and 200 <= status < 300:
                self.posted_total += 1
                return
            if status is not None and status not in _RETRYABLE_STATUS:
                self.rejected_total += 1
                log.error("webhook %s refused alert event %s with HTTP %d (not retried): %s", self.url, event.event_id, status, detail)
                return
            self.failed_attempts_total += 1
            last_error = detail
            if attempt == self.max_attempts:
                break
            delay_s = min(self.backoff_max_s, self.backoff_initial_s * 2 ** (attempt - 1)) * random.uniform(0.8, 1.2)
            if retry_after_s is not None:
                delay_s = min(self.backoff_max_s, max(delay_s, retry_after_s))
            log.info("webhook %s attempt %d for alert event %s failed (%s); retrying in %.2f s", self.url, attempt, event.event_id, detail, delay_s)
            self._sleep(delay_s)
        raise WebhookError(f"webhook {self.url} failed {self.max_attempts} times for alert event {event.event_id}: {last_error}")

    def _post(self, body: bytes, event_id: str) -> tuple[int | None, float | None, str]:
        """One POST: (HTTP status or None when no answer came, Retry-After in seconds, a description)."""
        request = urllib.request.Request(
            self.url,
            data=body,
            method="POST",
            headers={"Content-Type": "application/json", "User-Agent": "pipepulse-alerts", EVENT_ID_HEADER: event_id},
        )
        try:
            with self._opener.open(request, timeout=self.timeout_s) as response:
                response.read()
                return int(response.status), None, f"HTTP {response.status}"
        except urllib.error.HTTPError as exc:
            text = exc.read(500).decode(errors="replace")
            exc.close()
            return exc.code, _retry_after_s(exc.headers), f"HTTP {exc.code} {text}".strip()
        except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
            return None, None, f"{type(exc).__name__}: {exc}"


def _retry_after_s(headers: email.message.Message | None) -> float | None:
    """Retry-After as seconds or an HTTP date; None when absent or unreadable."""
    raw = headers.get("Retry-After") if headers is not None else None
    if not raw:
        return None
    try:
        return max(0.0, float(raw))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, when.timestamp() - time.time())


class LoggingSink:
    """Logs each event as one line: ERROR for a critical alert firing, WARNING for others firing, INFO for the rest."""

    def __init__(self, logger: logging.Logger | None = None) -> None:
        self.logger = logger or log

    def __call__(self, event: AlertEvent) -> None:
        level = logging.INFO
        if event.transition in ("firing", "escalated", "severity_changed") and event.state != "resolved":
            level = logging.ERROR if event.severity == "critical" else logging.WARNING
        labels = ",".join(f"{k}={v}" for k, v in sorted(event.labels.items()))
        self.logger.log(
            level,
            "alert %s %s {%s} severity=%s state=%s value=%s threshold=%s notify=%s event=%s: %s",
            event.transition, event.rule, labels, event.severity, event.state, event.value, event.threshold,
            event.notify, event.event_id, event.message,
        )
