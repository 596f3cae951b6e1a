"""The client a pipeline process imports: cheap recording calls, delivery in the background."""

from __future__ import annotations

import atexit
import multiprocessing.util
import os
import socket
import threading
import time
import weakref
from collections import Counter, deque
from dataclasses import dataclass, replace
from typing import Any, Callable, Mapping, Sequence

from schemas import CardinalityGuard, Limits, Names
from schemas.events import (
    TAG_COUNT,
    TAG_IN_PROGRESS,
    TAG_LIFECYCLE,
    TAG_OPERATION,
    TAG_SYSTEM,
    InProgressSample,
    LifecycleEvent,
    LifecycleKind,
    OperationEvent,
    SampleScope,
    Scalar,
    SystemSample,
)
from schemas.names import EVENTS_MAXLEN, KAFKA_SCHEME

from emitters.config import EmitterConfig
from emitters.flusher import Flusher, Identity, Row
from emitters.sink import RedisSink, Sink
from emitters.tracking import Operation

_live: weakref.WeakSet[Emitter] = weakref.WeakSet()
_hooks_installed = False
_OP_VERSION = OperationEvent.VERSION
_SYSTEM_VERSION = SystemSample.VERSION
_LIFECYCLE_VERSION = LifecycleEvent.VERSION
_IN_PROGRESS_VERSION = InProgressSample.VERSION


@dataclass(frozen=True, slots=True, kw_only=True)
class EmitterStats:
    """Counts since this emitter (or its forked child) started; every recorded event is in exactly one of
    delivered, dropped, invalid, buffered or in flight."""

    delivered_total: int
    dropped_total: int
    invalid_total: int
    buffered: int
    in_flight: int
    batches_total: int
    send_errors_total: int
    names_overflow_total: int


class Emitter:
    """Records operations, counters and samples of one component and sends them to `{prefix}:events`.

    Never raises into the host and never blocks it: calls append to a bounded
    buffer; when the buffer is full the oldest events are dropped and counted.
    """

    def __init__(
        self,
        component: str,
        redis_url: str | None = None,
        *,
        sink: Sink | None = None,
        config: EmitterConfig | None = None,
        component_config: Mapping[str, Scalar] | None = None,
        depends_on: Sequence[str] | None = None,
        max_names: int = 500,
        clock: Callable[[], float] = time.time,
        max_entry_bytes: int = Limits().max_entry_bytes,
    ) -> None:
        settings = config or EmitterConfig()
        if redis_url is not None:
            settings = replace(settings, redis_url=redis_url)
        self.component = component
        self.config = settings
        self._clock = clock
        self._component_config = dict(component_config or {})
        self._depends_on = None if depends_on is None else _names_of(depends_on)
        self._names = CardinalityGuard(max_names=max_names)
        self._known_names = self._names.known  # a live view, checked before admit() to skip a call on the hot path
        self._sink = sink or _default_sink(settings, component)
        self._max_entry_bytes = min(max_entry_bytes, getattr(self._sink, "max_payload_bytes", max_entry_bytes))  # optional: users' own sinks predate it
        self._closed = False
        self._start_process()
        _install_hooks()
        _live.add(self)
        multiprocessing.util.register_after_fork(self, _close_at_multiprocessing_exit)

    @classmethod
    def from_env(cls, component: str, environ: Mapping[str, str] | None = None, **kwargs: Any) -> Emitter:
        """Settings from `PIPEPULSE_*` variables (see EmitterConfig); for entry points."""
        return cls(component, config=EmitterConfig.from_env(environ), **kwargs)

    def _start_process(self) -> None:
        """(Re)initialise per-process state: at construction and in a forked child."""
        pid = os.getpid()
        host = socket.gethostname()
        self._buffer: deque[Row] = deque()
        self._max_buffer = self.config.buffer_max_events
        self._lock = threading.Lock()
        self._last_heartbeat_s = self._last_in_progress_s = self._clock()
        # Operations running now (Operation adds and discards itself: set.add/discard are atomic, so no lock
        # on the hot path); the flusher thread counts them, keeps the peak and reports them as gauges.
        self._running: set[Operation] = set()
        self._peaks: dict[str, int] = {}
        self._reported: set[str] = set()  # operations last reported with calls in progress
        self._flusher = Flusher(
            buffer=self._buffer,
            lock=self._lock,
            identity=Identity(producer_id=f"{host}:{pid}:{self.component}:{os.urandom(4).hex()}", component=self.component, pid=pid, host=host),
            sink=self._sink,
            clock=self._clock,
            batch_max_events=self.config.batch_max_events,
            max_entry_bytes=self._max_entry_bytes,
            flush_interval_s=self.config.flush_interval_s,
            on_cycle=self._on_cycle,
        )
        self.lifecycle("started", self._component_config, self._depends_on)
        self._flusher.start()

    @property
    def producer_id(self) -> str:
        return self._flusher.identity.producer_id

    # -- the hot path ----------------------------------------------------

    def _push(self, row: Row) -> None:
        buffer = self._buffer
        if len(buffer) < self._max_buffer:
            buffer.append(row)  # deque.append is atomic: no lock on the hot path
        else:
            self._overflow(row)

    def _overflow(self, row: Row) -> None:
        """The buffer is full: drop the oldest events, count them, keep the newest."""
        with self._lock:
            while len(self._buffer) >= self._max_buffer:
                try:
                    self._buffer.popleft()
                except IndexError:  # the flusher emptied it meanwhile
                    break
                self._flusher.record_drop()
            self._buffer.append(row)

    def track(self, operation: str) -> Operation:
        """A context manager and decorator that records duration, success and error type."""
        return Operation(self, operation if operation in self._known_names else self._names.admit(operation))

    def record(
        self,
        operation: str,
        duration_ms: float,
        ok: bool = True,
        cache_hits: int = 0,
        cache_misses: int = 0,
        error_type: str | None = None,
        counters: Mapping[str, float] | None = None,
    ) -> None:
        """Record an operation timed elsewhere."""
        if operation not in self._known_names:
            operation = self._names.admit(operation)
        row = (TAG_OPERATION, _OP_VERSION, self._clock(), operation, duration_ms, ok, error_type, cache_hits, cache_misses, counters)
        buffer = self._buffer  # _push inlined: this is the hottest call of the library
        if len(buffer) < self._max_buffer:
            buffer.append(row)
        else:
            self._overflow(row)

    def count(self, name: str, value: float = 1) -> None:
        """Add to a domain counter (files_processed, calls_detected) outside any operation."""
        self._push((TAG_COUNT, 1, self._clock(), self._names.admit(name), value))

    def lifecycle(self, kind: LifecycleKind, config: Mapping[str, Scalar] | None = None, depends_on: Sequence[str] | None = None) -> None:
        self._push((TAG_LIFECYCLE, _LIFECYCLE_VERSION, self._clock(), kind, dict(config or {}), None if depends_on is None else list(_names_of(depends_on))))

    def declare_dependencies(self, depends_on: Sequence[str]) -> None:
        """Declare the components this one depends on (replacing any earlier declaration); restarts repeat it."""
        self._depends_on = _names_of(depends_on)
        self.lifecycle("registered", depends_on=self._depends_on)

    def in_progress(self) -> dict[str, int]:
        """Calls of each operation running now (tracked with `track`), as the in-progress gauges report them."""
        return dict(Counter(op.operation for op in self._running.copy()))  # set.copy is atomic: no lock needed

    def system_sample(
        self,
        *,
        scope: SampleScope,
        cpu_percent: float,
        rss_bytes: int,
        memory_total_bytes: int,
        read_bytes: int,
        write_bytes: int,
        threads: int,
        open_files: int,
        net_sent_bytes: int | None = None,
        net_recv_bytes: int | None = None,
        net_sent_packets: int | None = None,
        net_recv_packets: int | None = None,
    ) -> None:
        """One resource sample; SystemSampler calls this on a schedule. Network counters are cumulative, None where unmeasured."""
        self._push(
            (
                TAG_SYSTEM, _SYSTEM_VERSION, self._clock(), scope, cpu_percent, rss_bytes, memory_total_bytes, read_bytes, write_bytes, threads, open_files,
                net_sent_bytes, net_recv_bytes, net_sent_packets, net_recv_packets,
            )
        )

    # -- control ---------------------------------------------------------

    def _on_cycle(self) -> None:
        """On the flusher thread, every flush interval: the heartbeat and the in-progress gauges."""
        now = self._clock()
        if now - self._last_heartbeat_s >= self.config.heartbeat_interval_s:
            self._last_heartbeat_s = now
            self.lifecycle("heartbeat")
        self._sample_in_progress(now)

    def _sample_in_progress(self, now: float) -> None:
        """Keep each operation's peak at this cadence; every `in_progress_interval_s`, report the operations
        with calls in progress, or with some since the last report: a return to zero is reported as
        (0, its peak), then once as (0, 0), after which the operation is not reported until it runs again."""
        counts = self.in_progress()
        peaks = self._peaks
        for name, running in counts.items():
            if running > peaks.get(name, 0):
                peaks[name] = running
        if now - self._last_in_progress_s < self.config.in_progress_interval_s:
            return
        self._last_in_progress_s = now
        reported = set()
        for name in sorted(peaks.keys() | self._reported):
            running = counts.get(name, 0)
            peak = max(peaks.get(name, 0), running)
            self._push((TAG_IN_PROGRESS, _IN_PROGRESS_VERSION, now, name, running, peak))
            if peak:
                reported.add(name)
        self._reported = reported
        self._peaks = dict(counts)  # the next interval's peak starts from what runs now

    def flush(self, timeout_s: float = 5.0) -> bool:
        """Wait until everything recorded so far is delivered; False if `timeout_s` passed first."""
        return self._flusher.flush(timeout_s)

    def close(self, timeout_s: float = 2.0) -> bool:
        """Send `stopped`, deliver what is buffered within `timeout_s`, stop the flusher. Idempotent."""
        if self._closed:
            return True
        self._closed = True
        self.lifecycle("stopped")
        delivered = self._flusher.stop(timeout_s)
        self._sink.close()
        _live.discard(self)
        return delivered

    def stats(self) -> EmitterStats:
        f = self._flusher
        return EmitterStats(
            delivered_total=f.delivered_total,
            dropped_total=f.dropped_total,
            invalid_total=f.invalid_total,
            buffered=len(self._buffer),
            in_flight=f.in_flight,
            batches_total=f.batches_total,
            send_errors_total=f.send_errors_total,
            names_overflow_total=self._names.overflow_total,
        )

    def __enter__(self) -> Emitter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _after_fork(self) -> None:
        if not self._closed:
            self._sink = self._sink.reopen()
            self._start_process()


def _default_sink(settings: EmitterConfig, component: str) -> Sink:
    """Redis Streams, or Kafka for a `kafka://` URL (keyed by component, for the Faust engine's partitions)."""
    names = Names(settings.prefix)
    url = settings.events_url or settings.redis_url
    if url.startswith(f"{KAFKA_SCHEME}://"):
        from emitters.kafka_sink import KafkaSink  # here: aiokafka is needed only then

        return KafkaSink(url=url, topic=names.topic("events"), key=component, socket_timeout_s=settings.socket_timeout_s)
    return RedisSink(stream=names.events, maxlen=EVENTS_MAXLEN, redis_url=url, socket_timeout_s=settings.socket_timeout_s)


def _names_of(depends_on: Sequence[str]) -> tuple[str, ...]:
    """A name given alone is one dependency, not one per character."""
    return (depends_on,) if isinstance(depends_on, str) else tuple(depends_on)


def _close_all() -> None:
    for emitter in list(_live):
        emitter.close()


def _reinit_all_in_child() -> None:
    for emitter in list(_live):
        emitter._after_fork()


def _close_at_multiprocessing_exit(emitter: Emitter) -> None:
    """multiprocessing's children leave by os._exit, skipping atexit; their exit still runs finalizers."""
    multiprocessing.util.Finalize(emitter, emitter.close, exitpriority=10)


def _install_hooks() -> None:
    """Once per process, at the first Emitter: close at exit, start afresh in forked children."""
    global _hooks_installed
    if not _hooks_installed:
        _hooks_installed = True
        atexit.register(_close_all)
        os.register_at_fork(after_in_child=_reinit_all_in_child)
