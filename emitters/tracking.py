"""`Emitter.track`: time a block or a function, record its outcome, re-raise what it raised."""

from __future__ import annotations

import functools
import inspect
from time import perf_counter
from types import TracebackType
from typing import TYPE_CHECKING, Any, Callable, TypeVar

from schemas.events import TAG_OPERATION, OperationEvent

if TYPE_CHECKING:
    from emitters.emitter import Emitter

F = TypeVar("F", bound=Callable[..., Any])
_VERSION = OperationEvent.VERSION


class Operation:
    """One tracked operation; also a decorator that tracks every call of a sync or async function.

    >>> with em.track("parse_file") as op:
    ...     op.cache(hits=1)
    ...     op.count("calls_detected", 12)
    """

    # Kept to four slots: building this object is most of track()'s cost. Extras live in one lazily made list.
    __slots__ = ("_emitter", "operation", "_start", "_extra")

    def __init__(self, emitter: Emitter, operation: str) -> None:
        self._emitter = emitter
        self.operation = operation
        self._extra: list[Any] | None = None  # [cache_hits, cache_misses, counters, error_type]

    def _extras(self) -> list[Any]:
        if self._extra is None:
            self._extra = [0, 0, None, None]
        return self._extra

    def cache(self, hits: int = 0, misses: int = 0) -> None:
        extra = self._extras()
        extra[0] += hits
        extra[1] += misses

    def count(self, name: str, value: float = 1) -> None:
        name = self._emitter._names.admit(name)  # counter names share the emitter's cardinality cap
        extra = self._extras()
        counters = extra[2] if extra[2] is not None else {}
        counters[name] = counters.get(name, 0) + value
        extra[2] = counters

    def fail(self, error_type: str = "failed") -> None:
        """Mark the operation failed without raising (for errors handled in the body)."""
        self._extras()[3] = error_type

    def __enter__(self, _perf: Callable[[], float] = perf_counter) -> Operation:
        self._emitter._running.add(self)  # in progress until __exit__ (the in-progress gauge)
        self._start = _perf()
        return self

    # The keyword defaults bind globals as locals: __exit__ runs on every tracked call.
    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
        _perf: Callable[[], float] = perf_counter,
        _tag: int = TAG_OPERATION,
        _version: int = _VERSION,
    ) -> None:
        duration_ms = (_perf() - self._start) * 1000.0
        emitter = self._emitter
        emitter._running.discard(self)
        extra = self._extra
        if extra is None and exc_type is None:
            row = (_tag, _version, emitter._clock(), self.operation, duration_ms, True, None, 0, 0, None)
        else:
            hits, misses, counters, error_type = extra or (0, 0, None, None)
            if exc_type is not None:
                error_type = exc_type.__name__
            row = (_tag, _version, emitter._clock(), self.operation, duration_ms, error_type is None, error_type, hits, misses, counters)
        buffer = emitter._buffer
        if len(buffer) < emitter._max_buffer:
            buffer.append(row)
        else:
            emitter._overflow(row)

    def __call__(self, fn: F) -> F:
        emitter, operation = self._emitter, self.operation
        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def tracked_async(*args: Any, **kwargs: Any) -> Any:
                with Operation(emitter, operation):
                    return await fn(*args, **kwargs)

            return tracked_async  # type: ignore[return-value]

        @functools.wraps(fn)
        def tracked(*args: Any, **kwargs: Any) -> Any:
            with Operation(emitter, operation):
                return fn(*args, **kwargs)

        return tracked  # type: ignore[return-value]
