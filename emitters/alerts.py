"""Subscribe to alert transitions: a consumer group on `{prefix}:alerts` that calls you once per event.

    def page(event: AlertEvent) -> None: ...
    with AlertSubscriber("redis://127.0.0.1:6390/0", page, group="pager"):
        ...  # `page` runs on a background thread until the block ends

Delivery is at least once: an entry is acked only after the callback returns,
so a crash re-delivers it. Duplicates are folded by event id (a bounded LRU),
which covers redelivery within a process and an event the evaluator appended
twice. A callback that raises is retried with back-off, in stream order (an
alert's `resolved` never overtakes its `firing`), and given up after
`max_deliveries`. The loop never dies of a Redis outage or a callback error.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from enum import Enum
from types import TracebackType
from typing import Any, Callable, Mapping, Sequence

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from schemas.alerts import TRANSITIONS, AlertEvent
from schemas.errors import SchemaError
from schemas.names import Names

from emitters.errors import ConfigError

log = logging.getLogger("pipepulse.alerts")

Callback = Callable[[AlertEvent], None]
Entry = tuple[bytes, Mapping[Any, Any]]  # fields: bytes -> bytes; empty when the entry was deleted while pending


class _Outcome(Enum):
    DELIVERED = "delivered"
    SKIPPED = "skipped"  # acked without calling back: duplicate, filtered, malformed, deleted, given up
    RETRY = "retry"  # left pending; the round stops here so later events wait their turn


@dataclass(frozen=True, slots=True, kw_only=True)
class SubscriberStats:
    """Counts since the subscriber was built; every entry read ends in one of the first five (or is still pending)."""

    delivered_total: int
    duplicates_total: int
    filtered_total: int
    malformed_total: int
    given_up_total: int
    callback_errors_total: int
    connection_errors_total: int


class AlertSubscriber:
    """Reads `{prefix}:alerts` through the consumer group `group`, calls `callback` per event, acks after it returns.

    `poll()` runs one round (for tests and custom loops); `run()` loops until
    `stop()`; `start()` runs that loop on a daemon thread. Not thread-safe:
    drive one instance from one thread.
    """

    def __init__(
        self,
        redis_url: str,
        callback: Callback,
        *,
        group: str = "subscriber",
        consumer: str = "c1",
        prefix: str = "pipepulse",
        from_start: bool = False,
        block_ms: int = 500,
        dedup_capacity: int = 10_000,
        transitions: frozenset[str] | None = None,
        notify_only: bool = False,
        max_deliveries: int = 5,
        read_count: int = 100,
        retry_backoff_initial_s: float = 1.0,
        retry_backoff_max_s: float = 60.0,
        reconnect_backoff_initial_s: float = 0.1,
        reconnect_backoff_max_s: float = 5.0,
        socket_timeout_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        try:
            names = Names(prefix)
        except ValueError as exc:
            raise ConfigError(f"prefix: {exc}") from exc
        # redis-py raises TimeoutError when a blocking read outlives the socket timeout (redis-py #3138).
        if not 0 < block_ms <= socket_timeout_s * 1000 / 2:
            raise ConfigError(f"block_ms must be positive and at most half of socket_timeout_s ({socket_timeout_s} s), got {block_ms}")
        for name, value, low in (("dedup_capacity", dedup_capacity, 0), ("max_deliveries", max_deliveries, 1), ("read_count", read_count, 1)):
            if value < low:
                raise ConfigError(f"{name} must be at least {low}, got {value}")
        backoffs = {
            "retry_backoff_initial_s": retry_backoff_initial_s,
            "retry_backoff_max_s": retry_backoff_max_s,
            "reconnect_backoff_initial_s": reconnect_backoff_initial_s,
            "reconnect_backoff_max_s": reconnect_backoff_max_s,
        }
        for name, seconds in backoffs.items():
            if not seconds >= 0:
                raise ConfigError(f"{name} must not be negative, got {seconds}")
        unknown = sorted(set(transitions or ()) - TRANSITIONS)
        if unknown:
            raise ConfigError(f"transitions: unknown {unknown}; known are {sorted(TRANSITIONS)}")
        if not group or not consumer:
            raise ConfigError("group and consumer must be non-empty")
        self.stream = names.stream("alerts")
        self.group = names.group(group)
        self.consumer = consumer
        self.block_ms = block_ms
        self._max_block_ms = int(socket_timeout_s * 1000 / 2)
        self.max_deliveries = max_deliveries
        self.transitions = transitions
        self.notify_only = notify_only
        self._callback = callback
        self._from_start = from_start
        self._dedup_capacity = dedup_capacity
        self._read_count = read_count
        self._retry_backoff = (retry_backoff_initial_s, retry_backoff_max_s)
        self._reconnect_backoff = (reconnect_backoff_initial_s, reconnect_backoff_max_s)
        self._clock = clock
        try:
            # No connection yet: redis-py connects on the first command. Its own retries are off, because a
            # retried XREADGROUP after a lost reply would deliver entries nobody sees; we re-read our pending list instead.
            self._client = redis.Redis.from_url(
                redis_url, socket_timeout=socket_timeout_s, socket_connect_timeout=min(2.0, socket_timeout_s), retry=Retry(NoBackoff(), 0)
            )
        except ValueError as exc:
            raise ConfigError(f"redis_url: {exc}") from exc
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._cursor = "0"  # our own pending entries first, then ">" for new ones
        self._group_ready = False
        self._retrying = False  # the head of our pending list failed: re-read it alone, so later entries' counts stay true
        self._not_before = 0.0  # clock time before which no read is made (retry or reconnect back-off)
        self._reconnect_delay_s = 0.0  # non-zero while Redis is failing
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._counts = dict.fromkeys(SubscriberStats.__dataclass_fields__, 0)

    # -- lifecycle --------------------------------------------------------

    def start(self) -> AlertSubscriber:
        """Run the loop on a daemon thread."""
        if self._thread is not None and self._thread.is_alive():
            raise RuntimeError("this subscriber is already running")
        self._stop.clear()
        self._thread = threading.Thread(target=self.run, name=f"pipepulse-alerts-{self.group}", daemon=True)
        self._thread.start()
        return self

    def run(self) -> None:
        """Read and dispatch until `stop()`; closes the connection on the way out."""
        try:
            while not self._stop.is_set():
                try:
                    self.poll()
                except Exception as exc:  # noqa: BLE001 - a config or server error: log it, back off, keep trying
                    self._failed(exc, unexpected=True)
        finally:
            self._client.close()

    def stop(self, timeout_s: float = 5.0) -> bool:
        """Ask the loop to end (safe from a signal handler); wait up to `timeout_s` for the background thread.

        True when no background thread is left running. An event whose callback is still running stays
        pending and is delivered again by the next subscriber of the group.
        """
        self._stop.set()
        thread = self._thread
        if thread is None or thread is threading.current_thread():
            return True
        thread.join(timeout_s)
        return not thread.is_alive()

    def close(self, timeout_s: float = 5.0) -> bool:
        """`stop()`, then release the connection."""
        stopped = self.stop(timeout_s)
        self._client.close()
        return stopped

    def __enter__(self) -> AlertSubscriber:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def stats(self) -> SubscriberStats:
        return SubscriberStats(**self._counts)

    # -- one round ----------------------------------------------------------

    def poll(self, timeout_ms: int | None = None) -> int:
        """Read once and dispatch what came; block at most about `timeout_ms` (default `block_ms`; capped at
        half the socket timeout).

        Returns the number of events handed to the callback that returned. Redis failures are logged
        and backed off from here (the next calls wait); they are never raised.
        """
        budget_s = (self.block_ms if timeout_ms is None else timeout_ms) / 1000
        pause_s = self._not_before - self._clock()
        if pause_s > 0:  # backing off: wait within the budget, and read only if the pause ends inside it
            if pause_s >= budget_s:
                self._stop.wait(budget_s)
                return 0
            if self._stop.wait(pause_s):
                return 0
            budget_s -= pause_s
        try:
            delivered = self._round(int(budget_s * 1000))
        except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
            self._failed(exc, unexpected=False)
            return 0
        except redis.ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            log.warning("consumer group %s on %s is gone (server restarted without persistence?): recreating it", self.group, self.stream)
            self._group_ready = False
            self._cursor = "0"
            return 0
        if self._reconnect_delay_s:
            log.warning("alert subscriber %s recovered: reading %s again", self.group, self.stream)
            self._reconnect_delay_s = 0.0
        return delivered

    def _round(self, budget_ms: int) -> int:
        if not self._group_ready:
            self._ensure_group()
        entries: list[Entry] = []
        if self._cursor != ">":
            entries = self._read(budget_ms)  # moves the cursor to ">" once our pending list is exhausted
        if not entries and self._cursor == ">":
            entries = self._read(budget_ms)
        delivered = 0
        for entry_id, fields in entries:
            if self._stop.is_set():  # the rest stays pending for the next round or the next subscriber
                self._cursor = "0"
                break
            outcome = self._handle(entry_id, fields)
            if outcome is _Outcome.RETRY:
                self._cursor = "0"
                break
            delivered += outcome is _Outcome.DELIVERED
            if self._cursor != ">":
                self._cursor = entry_id.decode()
        return delivered

    def _ensure_group(self) -> None:
        try:
            self._client.xgroup_create(self.stream, self.group, id="0" if self._from_start else "$", mkstream=True)
            log.info("created consumer group %s on %s", self.group, self.stream)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        self._group_ready = True

    def _read(self, budget_ms: int) -> list[Entry]:
        """Our pending entries after the cursor (no blocking), or, once they are exhausted, new ones."""
        history = self._cursor != ">"
        count = 1 if self._retrying else self._read_count
        block = None if history or budget_ms <= 0 else min(budget_ms, self._max_block_ms)  # BLOCK 0 would mean forever
        response = self._client.xreadgroup(self.group, self.consumer, {self.stream: self._cursor}, count=count, block=block)
        entries = _entries(response)
        if history and not entries:
            self._cursor = ">"
        return entries

    # -- one entry --------------------------------------------------------

    def _handle(self, entry_id: bytes, fields: Mapping[Any, Any] | None) -> _Outcome:
        if not fields:  # trimmed or deleted from the stream while pending
            log.warning("alert entry %s of %s no longer exists; acking it", entry_id.decode(), self.stream)
            return self._skip(entry_id, "malformed_total")
        try:
            event = AlertEvent.from_fields(fields)
        except (SchemaError, AttributeError, TypeError, ValueError) as exc:  # from_fields lets a few shapes through raw
            log.warning("skipping malformed alert entry %s of %s: %s", entry_id.decode(), self.stream, exc)
            return self._skip(entry_id, "malformed_total")
        if event.event_id in self._seen:
            self._seen.move_to_end(event.event_id)
            log.debug("alert event %s seen before (entry %s): acking without calling back", event.event_id, entry_id.decode())
            return self._skip(entry_id, "duplicates_total")
        if (self.transitions is not None and event.transition not in self.transitions) or (self.notify_only and not event.notify):
            return self._skip(entry_id, "filtered_total")
        try:
            self._callback(event)
        except Exception as exc:  # noqa: BLE001 - the host's callback must not take the loop down
            return self._callback_failed(entry_id, event, exc)
        self._remember(event.event_id)
        self._retrying = False
        self._counts["delivered_total"] += 1
        self._client.xack(self.stream, self.group, entry_id)
        return _Outcome.DELIVERED

    def _skip(self, entry_id: bytes, counter: str) -> _Outcome:
        self._counts[counter] += 1
        self._client.xack(self.stream, self.group, entry_id)
        return _Outcome.SKIPPED

    def _remember(self, event_id: str) -> None:
        if self._dedup_capacity:
            self._seen[event_id] = None
            if len(self._seen) > self._dedup_capacity:
                self._seen.popitem(last=False)

    def _callback_failed(self, entry_id: bytes, event: AlertEvent, exc: Exception) -> _Outcome:
        self._counts["callback_errors_total"] += 1
        pending: list[dict[str, Any]] = self._client.xpending_range(self.stream, self.group, min=entry_id, max=entry_id, count=1)
        if not pending:  # claimed or acked by someone else meanwhile: no longer ours to retry
            log.warning("alert callback failed on event %s (entry %s, no longer pending): %r", event.event_id, entry_id.decode(), exc, exc_info=exc)
            return _Outcome.SKIPPED
        deliveries = int(pending[0]["times_delivered"])
        if deliveries >= self.max_deliveries:
            log.error(
                "alert callback gave up on event %s (entry %s, %s %s) after %d deliveries: %r",
                event.event_id, entry_id.decode(), event.rule, event.transition, deliveries, exc, exc_info=exc,
            )
            self._retrying = False
            return self._skip(entry_id, "given_up_total")
        initial_s, max_s = self._retry_backoff
        delay_s = min(max_s, initial_s * 2 ** (deliveries - 1)) * random.uniform(0.8, 1.2)
        log.warning(
            "alert callback failed on event %s (entry %s, delivery %d of %d); retrying in %.2f s: %r",
            event.event_id, entry_id.decode(), deliveries, self.max_deliveries, delay_s, exc, exc_info=exc,
        )
        self._retrying = True
        self._not_before = self._clock() + delay_s
        return _Outcome.RETRY

    # -- failures of Redis (or of anything unexpected) ---------------------------------

    def _failed(self, exc: BaseException, *, unexpected: bool) -> None:
        """Log the first failure of a run of them, back off with jitter, and re-read our pending list after."""
        self._counts["connection_errors_total"] += 1
        if not self._reconnect_delay_s:
            if unexpected:
                log.error("alert subscriber %s failed; retrying with back-off", self.group, exc_info=exc)
            else:
                log.warning("alert subscriber %s lost Redis: %s; reconnecting with back-off", self.group, exc)
        initial_s, max_s = self._reconnect_backoff
        # Jitter spreads the reconnects of many subscribers after a server restart.
        self._reconnect_delay_s = min(max_s, max(initial_s, self._reconnect_delay_s * 2))
        self._not_before = self._clock() + self._reconnect_delay_s * random.uniform(0.8, 1.2)
        self._cursor = "0"  # what was handled but not acked comes back, and the LRU folds it
        self._group_ready = False  # the server may have restarted without the group


def _entries(response: Any) -> list[Entry]:
    """The entries of a one-stream XREADGROUP reply, in RESP2 (a list) or RESP3 (a dict) shape."""
    if not response:
        return []
    if isinstance(response, dict):
        streams: Sequence[Any] = list(response.values())
        return list(streams[0][0]) if streams and streams[0] else []
    return list(response[0][1])
