"""`PerformanceIntegrationService`: the integration API the call-detection pipeline was written against, on pipepulse.

    service = PerformanceIntegrationService(redis_url=url, alert_callback=handle_critical_alerts)
    await service.initialize()          # or, in code that is not async, the same calls without await
    await service.start()
    service.register_component("breadcrumb_cache", depends_on=["tree_sitter_manager"])
    service.track_operation(component="breadcrumb_cache", operation_name="resolve_breadcrumb", duration_ms=5.2, success=True)
    health = service.get_health_status()
    await service.stop()

Recording goes through one Emitter per component (never raises, never blocks:
when Redis is slow or down it drops and counts). Reading (`get_health_status`,
`get_dashboard_data`, `get_components`) answers from snapshots a background
thread refreshes every `refresh_interval_s`, so it does no I/O either; the
snapshots are the processors' (`schemas.views` reshapes them, as the JSON API
does). Alerts reach `alert_callback` through a consumer group: at least once,
acknowledged after the callback returns, deduplicated by event id, and resumed
where it stopped when the service restarts.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from dataclasses import dataclass, replace
from types import TracebackType
from typing import Any, Callable, Generator, Mapping, Sequence

import redis

from schemas import DEFAULT_PREFIX, Names, views
from schemas.events import Scalar

from emitters.alerts import AlertSubscriber
from emitters.config import EmitterConfig
from emitters.emitter import Emitter
from emitters.errors import ConfigError
from emitters.integration_alerts import AlertCallback, CallbackRunner
from emitters.sampler import SystemSampler
from emitters.tracking import Operation

log = logging.getLogger("pipepulse.integration")


class Completion:
    """What the lifecycle calls return: done at once outside an event loop; inside one, the blocking part runs on
    the loop's executor and this awaits it. So `await service.start()` and a plain `service.start()` both work."""

    __slots__ = ("_future",)

    def __init__(self, future: asyncio.Future[None] | None = None) -> None:
        self._future = future

    def __await__(self) -> Generator[Any, None, None]:
        if self._future is not None:
            yield from self._future.__await__()


@dataclass(frozen=True, slots=True, kw_only=True)
class IntegrationStats:
    """Delivery counts summed over the components' emitters, alert deliveries, and snapshot reads."""

    components: int
    delivered_total: int
    dropped_total: int
    alerts_delivered_total: int
    alert_duplicates_total: int
    refreshes_total: int
    refresh_errors_total: int
    snapshot_age_s: float | None  # since the last successful refresh; None before the first


class PerformanceIntegrationService:
    """Components, operations, cache lookups and alerts in the pipeline's own vocabulary."""

    def __init__(
        self,
        redis_url: str | None = None,
        *,
        alert_callback: AlertCallback | None = None,
        prefix: str = DEFAULT_PREFIX,
        config: EmitterConfig | None = None,
        alert_group: str = "integration",
        alert_transitions: frozenset[str] | None = None,
        refresh_interval_s: float = 1.0,
        history_windows: int = 60,
        sample_system: bool = True,
        sample_interval_s: float = 5.0,
        callback_timeout_s: float = 30.0,
    ) -> None:
        settings = config or EmitterConfig()
        if prefix != DEFAULT_PREFIX:
            settings = replace(settings, prefix=prefix)
        if redis_url is not None:
            settings = replace(settings, redis_url=redis_url)
        if not refresh_interval_s > 0 or history_windows < 1:
            raise ConfigError(f"refresh_interval_s must be positive and history_windows at least 1, got {refresh_interval_s} and {history_windows}")
        try:
            self._names = Names(settings.prefix)
        except ValueError as exc:
            raise ConfigError(f"prefix: {exc}") from exc
        self.config = settings
        self.refresh_interval_s = refresh_interval_s
        self.history_windows = history_windows
        self._emitters: dict[str, Emitter] = {}
        self._lock = threading.Lock()  # components may be registered from several threads
        self._sample = sample_system
        self._sample_interval_s = sample_interval_s
        self._sampler: SystemSampler | None = None
        self._runner = None if alert_callback is None else CallbackRunner(alert_callback, callback_timeout_s)
        self._subscriber: AlertSubscriber | None = None
        self._alert_group = alert_group
        self._alert_transitions = alert_transitions  # None: the transitions that page (firing, resolved, escalated, ...)
        self._client: redis.Redis | None = None
        self._snapshots: dict[str, Any] = {}
        self._history: dict[str, Any] = {"windows": [], "health_history": []}
        self._refreshed_at: float | None = None
        self._history_at = -float("inf")
        self._refreshes_total = self._refresh_errors_total = 0
        self._stop = threading.Event()
        self._refresher: threading.Thread | None = None

    # -- lifecycle: each returns a Completion (await it in async code, or ignore it)

    def initialize(self) -> Completion:
        """Open the connection the snapshots are read on and check the server answers (a server that is down is logged, not raised)."""
        return self._lifecycle(self._initialize)

    def start(self) -> Completion:
        """Start reading snapshots, sampling this process and host, and delivering alerts to the callback."""
        if self._runner is not None:
            try:
                self._runner.loop = asyncio.get_running_loop()  # async callbacks run on the host's loop
            except RuntimeError:
                self._runner.loop = None
        return self._lifecycle(self._start)

    def stop(self, timeout_s: float = 5.0) -> Completion:
        """Stop the background work and deliver what the components recorded (within `timeout_s`). Idempotent."""
        return self._lifecycle(lambda: self._stop_all(timeout_s))

    def _lifecycle(self, work: Callable[[], None]) -> Completion:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            work()
            return Completion()
        return Completion(loop.run_in_executor(None, work))

    def _initialize(self) -> None:
        if self._client is not None:
            return
        try:
            self._client = redis.Redis.from_url(self.config.redis_url, socket_timeout=self.config.socket_timeout_s, socket_connect_timeout=self.config.socket_timeout_s)
        except ValueError as exc:
            raise ConfigError(f"redis_url: {exc}") from exc
        try:
            self._client.ping()
        except redis.RedisError as exc:
            log.warning("pipepulse server at %s does not answer yet (%s): recording continues, snapshots will follow", self.config.redis_url, exc)

    def _start(self) -> None:
        self._initialize()
        if self._refresher is not None:
            return
        self._stop.clear()
        self.refresh()
        self._refresher = threading.Thread(target=self._refresh_loop, name="pipepulse-integration", daemon=True)
        self._refresher.start()
        if self._runner is not None:
            self._subscriber = AlertSubscriber(
                self.config.redis_url, self._runner, group=self._alert_group, prefix=self.config.prefix,
                transitions=self._alert_transitions, notify_only=self._alert_transitions is None,
            ).start()
        with self._lock:
            if self._emitters:
                self._start_sampler(next(iter(self._emitters.values())))

    def _stop_all(self, timeout_s: float) -> None:
        self._stop.set()
        if self._subscriber is not None:
            self._subscriber.close(timeout_s)
            self._subscriber = None
        if self._refresher is not None:
            self._refresher.join(timeout_s)
            self._refresher = None
        if self._sampler is not None:
            self._sampler.stop(timeout_s)
            self._sampler = None
        with self._lock:
            emitters, self._emitters = list(self._emitters.values()), {}
        for emitter in emitters:
            emitter.close(timeout_s)
        if self._client is not None:
            self._client.close()
            self._client = None

    def _start_sampler(self, emitter: Emitter) -> None:
        """One sampler per process (on the first component's emitter), so memory and CPU are not counted twice."""
        if self._sample and self._sampler is None and self._refresher is not None:
            self._sampler = SystemSampler(emitter, interval_s=self._sample_interval_s).start()

    # -- recording: never raises into, nor blocks, the host

    def register_component(self, name: str, depends_on: Sequence[str] | None = None, config: Mapping[str, Scalar] | None = None) -> None:
        """Announce a component, what it depends on (upstream components; None keeps what was declared) and its configuration."""
        with self._lock:
            emitter = self._emitters.get(name)
            if emitter is None:
                emitter = self._emitters[name] = Emitter(name, config=self.config, component_config=config, depends_on=depends_on)
                self._start_sampler(emitter)
                return
        if depends_on is not None:
            emitter.declare_dependencies(depends_on)
        if config:
            emitter.lifecycle("configured", config)

    def _emitter(self, component: str) -> Emitter:
        emitter = self._emitters.get(component)
        if emitter is None:  # recording for a component never registered registers it, with no dependencies declared
            with self._lock:
                emitter = self._emitters.get(component)
                if emitter is None:
                    emitter = self._emitters[component] = Emitter(component, config=self.config)
                    self._start_sampler(emitter)
        return emitter

    def track_operation(
        self,
        component: str,
        operation_name: str,
        duration_ms: float,
        success: bool = True,
        cache_hits: int = 0,
        cache_misses: int = 0,
        error_type: str | None = None,
        counters: Mapping[str, float] | None = None,
    ) -> None:
        """Record one operation timed by the caller; `counters` adds domain counts (calls_detected, files_processed)."""
        self._emitter(component).record(operation_name, duration_ms, success, cache_hits, cache_misses, None if success else error_type or "failed", counters)

    def record_cache_operation(self, component: str, operation_type: str, hit: bool, duration_ms: float = 0.0) -> None:
        """One cache lookup, recorded as the operation `cache_<operation_type>` with its hit or miss."""
        self._emitter(component).record(f"cache_{operation_type}", duration_ms, True, int(hit), int(not hit))

    def record_count(self, component: str, name: str, value: float = 1) -> None:
        """Add to a domain counter outside any operation (`files_processed`, `calls_detected`)."""
        self._emitter(component).count(name, value)

    def track(self, component: str, operation_name: str) -> Operation:
        """Time a block or a function yourself: duration, outcome, and the calls in progress while it runs."""
        return self._emitter(component).track(operation_name)

    def flush(self, timeout_s: float = 5.0) -> bool:
        """Wait until everything recorded so far is delivered (blocking: for scripts, tests and shutdown); False on timeout."""
        with self._lock:
            emitters = list(self._emitters.values())
        deadline = time.monotonic() + timeout_s
        return all([emitter.flush(max(0.0, deadline - time.monotonic())) for emitter in emitters])

    # -- reading: from the snapshots the background thread keeps fresh

    def get_health_status(self) -> dict[str, Any]:
        """Overall score and level, each component's status and what impacts it, the root causes."""
        return views.health_status(self._view())

    def get_dashboard_data(self) -> dict[str, Any]:
        """`current_metrics`, `charts` and `component_health` (healthy, warning, critical or unknown per component)."""
        return views.dashboard_data(self._view())

    def get_components(self) -> dict[str, Any]:
        """The component registry: status, registration and last-seen times, processes, hosts, configuration, dependencies."""
        return dict(self._view().get("registry", {}))

    def _view(self) -> dict[str, Any]:
        return {**self._snapshots, **self._history}

    def refresh(self) -> bool:
        """Read the snapshots now (blocking I/O: the background thread does this every `refresh_interval_s`); False if Redis failed."""
        client = self._client
        if client is None:
            return False
        now = time.monotonic()
        history = self.history_windows if now - self._history_at >= self.refresh_interval_s * 10 else 0  # charts move once per 10 s window
        try:
            snapshots = views.read(client, self._names, history)
        except (redis.RedisError, ValueError) as exc:  # ValueError: a snapshot that is not JSON
            self._refresh_errors_total += 1
            log.debug("pipepulse snapshot refresh failed: %s", exc)
            return False
        if history:
            self._history = {"windows": snapshots.pop("windows"), "health_history": snapshots.pop("health_history")}
            self._history_at = now
        self._snapshots = snapshots
        self._refreshed_at = now
        self._refreshes_total += 1
        return True

    def _refresh_loop(self) -> None:
        while not self._stop.wait(self.refresh_interval_s):  # a timer: the snapshots change once per tick
            self.refresh()

    def stats(self) -> IntegrationStats:
        with self._lock:
            emitters = [e.stats() for e in self._emitters.values()]
        subscriber = self._subscriber.stats() if self._subscriber is not None else None
        return IntegrationStats(
            components=len(emitters),
            delivered_total=sum(e.delivered_total for e in emitters),
            dropped_total=sum(e.dropped_total for e in emitters),
            alerts_delivered_total=subscriber.delivered_total if subscriber else 0,
            alert_duplicates_total=subscriber.duplicates_total if subscriber else 0,
            refreshes_total=self._refreshes_total,
            refresh_errors_total=self._refresh_errors_total,
            snapshot_age_s=None if self._refreshed_at is None else time.monotonic() - self._refreshed_at,
        )

    # -- context managers, sync and async

    def __enter__(self) -> PerformanceIntegrationService:
        self._start()
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None) -> None:
        self._stop_all(5.0)

    async def __aenter__(self) -> PerformanceIntegrationService:
        await self.initialize()
        await self.start()
        return self

    async def __aexit__(self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None) -> None:
        await self.stop()
