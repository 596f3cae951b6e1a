"""Alerts in the integration vocabulary, and the delivery of each one to the host's callback (sync or async)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
from dataclasses import dataclass
from typing import Any, Callable, Coroutine, Mapping

from schemas.alerts import AlertEvent, Severity


@dataclass(frozen=True, slots=True, kw_only=True)
class PerformanceAlert:
    """One alert transition. Times are event time, seconds since the epoch; None means "not yet".

    `alert_type` is the severity (warning, error or critical); `status` the alert's state after the
    transition (firing, resolved, flapping, ...); `cause` the upstream root cause when the component
    depends on a failing one. `event_id` is unique per transition: what deduplication goes by.
    """

    alert_type: Severity
    component: str
    message: str
    value: float | None
    threshold: float | None
    timestamp: float
    started_at: float | None
    fired_at: float | None
    resolved_at: float | None
    status: str
    transition: str
    rule: str
    alert_id: str
    event_id: str
    cause: str | None
    labels: Mapping[str, str]

    @property
    def is_resolved(self) -> bool:
        return self.status == "resolved"

    @classmethod
    def from_event(cls, event: AlertEvent) -> PerformanceAlert:
        return cls(
            alert_type=event.severity,
            component=event.component,
            message=event.message,
            value=event.value,
            threshold=event.threshold,
            timestamp=event.at_s,
            started_at=event.active_since_s,
            fired_at=event.fired_at_s,
            resolved_at=event.resolved_at_s,
            status=event.state,
            transition=event.transition,
            rule=event.rule,
            alert_id=event.fingerprint,
            event_id=event.event_id,
            cause=event.cause,
            labels=dict(event.labels),
        )


AlertCallback = Callable[[PerformanceAlert], Any]  # may return an awaitable (an async def callback)


async def _wait(awaitable: Any) -> Any:
    return await awaitable


class CallbackRunner:
    """Calls the host's callback on the subscriber's thread and returns only when it finished, so the alert
    is acknowledged after the callback did its work (at least once). An async callback runs on the host's
    event loop when the service was started from one, else on a loop of its own; one that outlives
    `timeout_s` is cancelled and retried."""

    def __init__(self, callback: AlertCallback, timeout_s: float) -> None:
        self._callback = callback
        self._timeout_s = timeout_s
        self.loop: asyncio.AbstractEventLoop | None = None

    def __call__(self, event: AlertEvent) -> None:
        result = self._callback(PerformanceAlert.from_event(event))
        if not inspect.isawaitable(result):
            return
        coroutine: Coroutine[Any, Any, Any] = _wait(result)
        loop = self.loop
        if loop is not None and loop.is_running():
            future = asyncio.run_coroutine_threadsafe(coroutine, loop)
            try:
                future.result(self._timeout_s)  # what it raises, the subscriber retries
            except concurrent.futures.TimeoutError:
                future.cancel()  # never two runs of one alert at once: the retry starts after this one is cancelled
                raise
        else:
            asyncio.run(coroutine)
