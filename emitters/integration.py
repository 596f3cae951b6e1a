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
from concurrent.futures import ThreadPoolExecutor
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
        for name, seconds in (("refresh_interval_s", refresh_interval_s), ("sample_interval_s", sample_interval_s), ("callback_timeout_s", callback_timeout_s)):
            if not seconds > 0:
                raise ConfigError(f"{name} must be positive, got {seconds}")
        if history_windows < 1:
            raise ConfigError(f"history_windows must be at least 1, got {history_windows}")
        try:
            self._names = Names(settings.prefix)
            redis.connection.parse_url(settings.redis_url)  # type: ignore[no-untyped-call]  # here: no recording call may be first to find it bad
        except ValueError as exc:
            raise ConfigError(f"prefix or redis_url: {exc}") from exc
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
        self._failing = False  # snapshot reads failing: logged once when it starts and once when it ends
        # Lifecycle calls run one at a time and in call order, whichever thread or loop makes them.
        self._lifecycle_lock = threading.Lock()
        self._executor: ThreadPoolExecutor | None = None

    # -- lifecycle: each returns a Completion (await it in async code, or ignore it)

    def initialize(self) -> Completion:
        """Open the connection the snapshots are read on and check the server answers (a server that is down is logged, not raised)."""
        return self._lifecycle(self._initialize)

    def start(self) -> Completion:
        """Start reading snapshots, sampling this process and host, and delivering alerts to the callback."""
        self._capture_loop()
        return self._lifecycle(self._start)

    def _capture_loop(self) -> None:
        """Async callbacks run on the loop the service was started from, if any."""
        if self._runner is not None:
            try:
                self._runner.loop = asyncio.get_running_loop()
            except RuntimeError:
                self._runner.loop = None

    def stop(self, timeout_s: float = 5.0) -> Completion:
        """Stop the background work and deliver what the components recorded (within `timeout_s`). Idempotent."""
        return self._lifecycle(lambda: self._stop_all(timeout_s))

    def _lifecycle(self, work: Callable[[], None]) -> Completion:
        def serialized() -> None:
            with self._lifecycle_lock:
                work()

        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            serialized()
            return Completion()
        if self._executor is None:  # one thread: lifecycle work runs in the order it was asked for, awaited or not
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pipepulse-lifecycle")
        return Completion(loop.run_in_executor(self._executor, serialized))

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
        self._refresher = threading.Thread(target=self._refresh_loop, name=f"pipepulse-integration-{self.config.prefix}", daemon=True)
        self._refresher.start()
        if self._runner is not None:
            timeout_s = self.config.socket_timeout_s  # as the emitters': stop() is never held by a server that does not answer
            self._subscriber = AlertSubscriber(
                self.config.redis_url, self._runner, group=self._alert_group, prefix=self.config.prefix,
                transitions=self._alert_transitions, notify_only=self._alert_transitions is None,
                socket_timeout_s=timeout_s, block_ms=max(1, int(min(500, timeout_s * 1000 / 2))),
            ).start()
        with self._lock:
            if self._emitters:
                self._start_sampler(next(iter(self._emitters.values())))

    def _stop_all(self, timeout_s: float) -> None:
        """Everything within `timeout_s` in all: the components share one deadline to deliver what they hold."""
        deadline = time.monotonic() + timeout_s
        self._stop.set()
        if self._subscriber is not None:
            self._subscriber.close(_left(deadline))
            self._subscriber = None
        if self._refresher is not None:
            self._refresher.join(_left(deadline))
            self._refresher = None
        if self._sampler is not None:
            self._sampler.stop(_left(deadline))
            self._sampler = None
        with self._lock:
            emitters, self._emitters = list(self._emitters.values()), {}
        for emitter in emitters:
            emitter.close(_left(deadline))
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
        """The component's emitter, made at its first record (registered with no dependencies declared).

        Also after `stop()`: recording then starts the component again, as before `start()`; it is delivered
        in the background and at exit, or by the next `stop()`.
        """
        emitter = self._emitters.get(component)
        if emitter is None:
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
        except Exception as exc:  # noqa: BLE001 - Redis, an ACL, a snapshot that is not JSON: the views keep their last values
            self._refresh_errors_total += 1
            if not self._failing:
                log.warning("pipepulse snapshot reads failing (the views keep their last values): %s", exc)
                self._failing = True
            return False
        if self._failing:
            log.warning("pipepulse snapshot reads recovered")
            self._failing = False
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
        running = self._subscriber  # read once: stop() may clear it meanwhile
        subscriber = running.stats() if running is not None else None
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
        self._capture_loop()
        with self._lifecycle_lock:
            self._start()
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None) -> None:
        with self._lifecycle_lock:
            self._stop_all(5.0)

    async def __aenter__(self) -> PerformanceIntegrationService:
        await self.initialize()
        await self.start()
        return self

    async def __aexit__(self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None) -> None:
        await self.stop()


def _left(deadline: float) -> float:
    return max(0.0, deadline - time.monotonic())
