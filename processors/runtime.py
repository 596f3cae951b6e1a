"""The one place where processors talk to Redis.

A `Worker` drives one pure processor from its consumer group: it re-reads its
own pending entries first, decodes, deduplicates by (producer_id, seq), applies,
and commits outputs, the checkpoint and the XACK in one MULTI/EXEC guarded by
its lease (WATCH), so a crash at any instant loses nothing and applies nothing
twice. A `Ticker` appends time marks to the event log. Both heal Redis faults
with jittered back-off and hold a lease, so a second instance is a hot standby.
"""

from __future__ import annotations

import gc
import json
import logging
import random
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Mapping, Protocol, Sequence

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from schemas.checks import Limits
from schemas.codec import TICK_FIELD, pack, unpack
from schemas.names import DEAD_MAXLEN, DERIVED_STREAMS, EVENTS_MAXLEN, LATEST_TABLES, Names

from processors.contract import BatchItem, ControlOutput, Output, PartKey, Parts, Processor, StreamOutput, to_json
from processors.intake import Entry, Prepared, prepare, prepare_records
from processors.errors import ProcessorError
from processors.ledger import COUNTERS_PART, Ledger

log = logging.getLogger("pipepulse.runtime")

CONSUMER = "active"  # one active instance per processor (the lease), so one consumer name owns the pending list
LEDGER_PART = "l"
PROCESSOR_PART = "p"
Stage = Callable[[str], None]
Reads = Sequence[tuple[str, Prepared]]  # one read's prepared entries, per stream


class LeaseLost(ProcessorError):
    """Another instance holds this processor's lease: stop writing, become a standby."""


@dataclass(frozen=True, slots=True, kw_only=True)
class RuntimeSettings:
    read_count: int = 64  # entries per read and per commit
    block_ms: int = 500  # well under socket_timeout_s, or redis-py raises TimeoutError (redis-py #3138)
    socket_timeout_s: float = 5.0
    lease_ttl_s: float = 5.0  # a standby takes over within about this long after the active instance dies
    tick_interval_s: float = 1.0
    max_deliveries: int = 5  # an entry the processor fails on this many times is dead-lettered
    backoff_initial_s: float = 0.05
    backoff_max_s: float = 5.0
    metrics_interval_s: float = 1.0
    limits: Limits = field(default_factory=Limits)


@dataclass(frozen=True, slots=True)
class Source:
    """The streams a worker reads, in the order their entries are applied, and how entries become items."""

    streams: tuple[str, ...]
    prepare: Callable[[str, Sequence[Entry], Ledger, Limits], Prepared]
    start_id: str = "0"  # where a new consumer group starts


def event_source(names: Names) -> Source:
    """The event log, from its oldest retained entry: every event counts."""
    return Source((names.events,), lambda stream, entries, ledger, limits: prepare(entries, ledger, limits))


def record_source(names: Names, shorts: Sequence[str]) -> Source:
    """Derived or command streams; a new group starts at new entries, since acting on old advice would be wrong."""
    return Source(tuple(names.stream(s) for s in shorts), lambda stream, entries, ledger, limits: prepare_records(stream, entries, ledger), start_id="$")


def tune_gc() -> None:
    """For processing processes only (never called on import): decoding a batch makes about a
    thousand short-lived lists, which makes the default collector thresholds spend 15-20 % of
    the time scanning; freezing what is loaded and raising the first threshold removes that."""
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)


def connect(url: str, settings: RuntimeSettings) -> redis.Redis:
    """redis-py's retries are off: a blindly retried EXEC or XADD could apply twice; the loops below own retrying."""
    return redis.Redis.from_url(url, socket_timeout=settings.socket_timeout_s, socket_connect_timeout=2.0, retry=Retry(NoBackoff(), 0))


class Lease:
    """A key with a TTL naming the active instance; only its holder renews or releases it."""

    _RENEW = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) else return 0 end"
    _RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end"

    def __init__(self, client: redis.Redis, key: str, ttl_s: float) -> None:
        self.key, self.token, self._ttl_ms = key, uuid.uuid4().hex, int(ttl_s * 1000)
        self._client = client
        self._renewed_at = -float("inf")

    def acquire(self) -> bool:
        if self._client.set(self.key, self.token, nx=True, px=self._ttl_ms) or self._client.eval(self._RENEW, 1, self.key, self.token, self._ttl_ms):
            self._renewed_at = time.monotonic()
            return True
        return False

    def renew_if_due(self) -> None:
        if time.monotonic() - self._renewed_at < self._ttl_ms / 3000:
            return
        if not self._client.eval(self._RENEW, 1, self.key, self.token, self._ttl_ms):
            raise LeaseLost(f"lease {self.key} is held by another instance")
        self._renewed_at = time.monotonic()

    def release(self) -> None:
        """Hand over at once on a clean shutdown, rather than after the TTL (if it may still be ours)."""
        if time.monotonic() - self._renewed_at >= self._ttl_ms / 1000:
            return
        try:
            self._client.eval(self._RELEASE, 1, self.key, self.token)
        except redis.RedisError as exc:
            log.warning("could not release lease %s (it expires by itself): %s", self.key, exc)


class Backoff:
    """Jittered exponential back-off that logs the first failure of an outage and the recovery, not every retry."""

    def __init__(self, settings: RuntimeSettings, what: str) -> None:
        self._settings, self._what, self.failures = settings, what, 0

    def failed(self, exc: BaseException, stop: threading.Event) -> None:
        self.failures += 1
        if self.failures == 1:
            log.warning("%s: %s; retrying with back-off", self._what, exc)
        delay = min(self._settings.backoff_max_s, self._settings.backoff_initial_s * 2 ** (self.failures - 1))
        stop.wait(delay * random.uniform(0.5, 1.0))

    def succeeded(self) -> None:
        if self.failures:
            log.warning("%s: recovered after %d failed attempts", self._what, self.failures)
        self.failures = 0


class Worker:
    """Runs one processor: `Worker(url=..., names=..., processor=StatsProcessor()).run(stop_event)`.

    It reads the event log unless given another `source` (the optimizer reads derived streams).
    """

    def __init__(
        self, *, url: str, names: Names, processor: Processor, settings: RuntimeSettings = RuntimeSettings(), on_stage: Stage | None = None, source: Source | None = None
    ) -> None:
        self.names, self.processor, self.settings = names, processor, settings
        self.source = source or event_source(names)
        self._client = connect(url, settings)
        self._lease = Lease(self._client, names.lease(processor.name), settings.lease_ttl_s)
        self._group, self._checkpoint = names.group(processor.name), names.checkpoint(processor.name)
        self._on_stage = on_stage or (lambda stage: None)
        self._ledger = Ledger()
        self._active = False
        self._state_valid = False  # in-memory state equals the last commit
        self._full_checkpoint = False
        self._cursor = dict.fromkeys(self.source.streams, "0")
        self._run_id: str | None = None
        self._metrics = RuntimeMetrics()

    @property
    def lease_token(self) -> str:
        """This instance's identity in the lease key (which instance is active)."""
        return self._lease.token

    def run(self, stop: threading.Event) -> None:
        backoff = Backoff(self.settings, f"processor {self.processor.name}")
        while not stop.is_set():
            try:
                if not self._active and not self._activate():
                    stop.wait(self.settings.lease_ttl_s / 5)  # hot standby
                    continue
                self._step(stop)
                backoff.succeeded()
            except LeaseLost as exc:
                log.warning("%s; standing by", exc)
                self._active = self._state_valid = False
            except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
                self._active = False
                backoff.failed(exc, stop)
        self._release()

    def _release(self) -> None:
        self._lease.release()
        self._client.close()

    # -- activation: lease, restart detection, restore, group

    def _activate(self) -> bool:
        if not self._lease.acquire():
            self._state_valid = False  # another instance is active: what it commits from now on is not in our memory
            return False
        run_id = str(self._client.info("server")["run_id"])
        if self._run_id is not None and run_id != self._run_id:
            log.warning("Redis server restarted (run_id %s -> %s)", self._run_id[:8], run_id[:8])
            self._metrics.server_restarts_total += 1
            if self._group_info() is None:
                # The pending entries of an uncommitted batch died with the group and cannot come back,
                # so what was applied stays applied (restoring would lose everything before them too).
                self._state_valid = True
            # Keep what was committed and applied; rewrite it whole in case the server lost it.
            self._full_checkpoint = self._state_valid
        self._run_id = run_id
        if not self._state_valid:
            self._restore()
        self._ensure_group()
        self._cursor = dict.fromkeys(self.source.streams, "0")  # first our own pending entries, then new ones
        self._active = True
        log.info("processor %s active (lease %s)", self.processor.name, self._lease.key)
        return True

    def _restore(self) -> None:
        parts, self._ledger = load_checkpoint(self._client, self.names, self.processor.name)
        self.processor.restore(parts)
        self._state_valid = True

    def _group_info(self, stream: str | None = None) -> dict[str, Any] | None:
        """This processor's group on a stream (the first by default) as XINFO GROUPS reports it (lag, pending), or None if it does not exist."""
        try:
            infos: list[dict[str, Any]] = self._client.xinfo_groups(stream or self.source.streams[0])
        except redis.ResponseError:  # no stream at all
            return None
        return next((g for g in infos if g["name"].decode() == self._group), None)

    def _ensure_group(self) -> None:
        for stream in self.source.streams:
            ensure_group(self._client, stream, self._group, start_id=self.source.start_id)

    # -- one read, apply, commit

    def _step(self, stop: threading.Event) -> None:
        self._lease.renew_if_due()
        self._maybe_publish_metrics()
        block = self.settings.block_ms if all(c == ">" for c in self._cursor.values()) else None
        try:
            response = self._client.xreadgroup(self._group, CONSUMER, dict(self._cursor), count=self.settings.read_count, block=block)  # type: ignore[arg-type]
        except redis.ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            log.warning("consumer group %s is missing (server restarted without persistence?): activating again", self._group)
            # Activation first: it tells a restarted server (whose loss our state must outlive) from a deleted group.
            self._active = False
            stop.wait(self.settings.backoff_initial_s)  # never a hot loop, whatever the server answers
            return
        read: dict[str, list[Entry]] = {stream.decode(): entries for stream, entries in response or []}  # type: ignore[union-attr,misc,str-unpack]
        for stream, cursor in self._cursor.items():
            if cursor != ">":
                self._cursor[stream] = read[stream][-1][0].decode() if read.get(stream) else ">"
        entries = [(stream, read[stream]) for stream in self.source.streams if read.get(stream)]
        if not entries:
            return
        self._on_stage("read")
        prepared = [(stream, self.source.prepare(stream, chunk, self._ledger, self.settings.limits)) for stream, chunk in entries]
        self._state_valid = False
        try:
            outputs = self.processor.apply([item for _, p in prepared for item in p.items])
        except Exception:  # a poison entry: find it, retry it, dead-letter it after max_deliveries
            log.exception("processor %s failed on a batch of %d entries", self.processor.name, sum(len(chunk) for _, chunk in entries))
            self._isolate(entries, stop)
            return
        self._on_stage("applied")
        self._commit(outputs, prepared)

    def _isolate(self, entries: Sequence[tuple[str, list[Entry]]], stop: threading.Event) -> None:
        """Apply one entry at a time from the last commit; commit the good ones, and retry or dead-letter the bad one."""
        self._restore()
        for stream, entry in ((stream, entry) for stream, chunk in entries for entry in chunk):
            prepared = self.source.prepare(stream, [entry], self._ledger, self.settings.limits)
            try:
                outputs = self.processor.apply(prepared.items)
            except Exception as exc:
                self._restore()
                pending: list[dict[str, Any]] = self._client.xpending_range(stream, self._group, min=entry[0], max=entry[0], count=1)
                deliveries = int(pending[0]["times_delivered"]) if pending else self.settings.max_deliveries
                if deliveries < self.settings.max_deliveries:
                    self._cursor = dict.fromkeys(self.source.streams, "0")  # re-read it (and what follows) from the pending list after a pause
                    stop.wait(self.settings.backoff_initial_s * 2**deliveries)
                    return
                dead = {"reason": "processor_error", "detail": f"{type(exc).__name__}: {exc}"[:500], "entry_id": entry[0].decode(), "deliveries": deliveries}
                prepared = Prepared(ack_ids=[entry[0]], dead=[dead if stream == self.names.events else {**dead, "stream": stream}])
                self._ledger.count("dead_letters_total")
                outputs = []
            self._commit(outputs, [(stream, prepared)])

    def _commit(self, outputs: Sequence[Output], reads: Reads) -> None:
        started = time.perf_counter()
        written, deleted = self._changes()
        pipe = self._client.pipeline(transaction=True)
        try:
            pipe.watch(self._lease.key)  # type: ignore[no-untyped-call]
            if pipe.get(self._lease.key) != self._lease.token.encode():
                raise LeaseLost(f"lease {self._lease.key} is held by another instance")
            pipe.multi()
            _queue_outputs(pipe, self.names, outputs)
            _queue_dead(pipe, self.names, [d for _, p in reads for d in p.dead], self.processor.name)
            if self._full_checkpoint:
                pipe.delete(self._checkpoint)
            if deleted:
                pipe.hdel(self._checkpoint, *deleted)
            if written:
                pipe.hset(self._checkpoint, mapping=written)  # type: ignore[arg-type]
            for stream, prepared in reads:
                if prepared.ack_ids:
                    pipe.xack(stream, self._group, *prepared.ack_ids)
            self._on_stage("committing")
            pipe.execute()
        except redis.WatchError as exc:
            raise LeaseLost(f"lease {self._lease.key} changed during a commit") from exc
        finally:
            pipe.reset()
        self._state_valid = True
        self._full_checkpoint = False
        self._metrics.committed(time.perf_counter() - started, reads)
        self._on_stage("committed")

    def _changes(self) -> tuple[dict[bytes, bytes], list[bytes]]:
        return checkpoint_changes({PROCESSOR_PART: self.processor, LEDGER_PART: self._ledger}, full=self._full_checkpoint)

    # -- self-monitoring

    def _maybe_publish_metrics(self) -> None:
        if not self._metrics.due(self.settings.metrics_interval_s):
            return
        groups = [self._group_info(stream) or {} for stream in self.source.streams]  # a backlog on any of its streams counts
        lag, pending = ([g.get(key) for g in groups] for key in ("lag", "pending"))
        publish_report(self._client, self.names, self.processor.name, self._metrics.report(time.monotonic(), self._ledger.counters, lag=_total(lag), pending=_total(pending)))


def publish_report(client: redis.Redis, names: Names, processor: str, report: Mapping[str, Any]) -> None:
    """A processor's own figures in `{prefix}:runtime`, where `pipepulse status` and /metrics read them."""
    client.hset(names.runtime, processor, to_json(report))


def _total(values: Sequence[int | None]) -> int | None:
    """A sum over streams, None if any is unknown (XINFO may not know a group's lag)."""
    return None if any(v is None for v in values) else sum(v for v in values if v is not None)


class Stateful(Protocol):
    def take_changes(self) -> tuple[Parts, set[PartKey]]: ...

    def snapshot(self) -> Parts: ...


def checkpoint_changes(sources: Mapping[str, Stateful], *, full: bool) -> tuple[dict[bytes, bytes], list[bytes]]:
    """Each source's changed parts (all of them when `full`) as checkpoint fields, keyed under the source's name."""
    written: dict[bytes, bytes] = {}
    deleted: list[bytes] = []
    for name, source in sources.items():
        source_written, source_deleted = source.take_changes()
        if full:  # the whole checkpoint is rewritten, so everything is written and nothing needs deleting
            source_written, source_deleted = source.snapshot(), set()
        written.update((pack([name, *k]), pack(v)) for k, v in source_written.items())
        deleted += [pack([name, *k]) for k in source_deleted]
    return written, deleted


def parse_checkpoint(raw: Mapping[bytes, bytes]) -> dict[str, Parts]:
    """Checkpoint fields back into each source's parts, by source name."""
    parts: dict[str, Parts] = {}
    for key, value in raw.items():
        name, *part = unpack(key)
        parts.setdefault(name, {})[tuple(part)] = unpack(value, Limits(max_entry_bytes=1 << 30))
    return parts


def _queue_dead(pipe: Any, names: Names, dead: Sequence[Mapping[str, Any]], processor: str) -> None:
    for letter in dead:
        pipe.xadd(names.dead, {**{k: v if isinstance(v, bytes) else str(v) for k, v in letter.items()}, "processor": processor}, maxlen=DEAD_MAXLEN, approximate=True)


def commit_once(client: redis.Redis, names: Names, engine: str, commit: EngineCommit) -> bool:
    """Write a commit's outputs, dead letters, counters and offset in one MULTI, unless an offset at or
    past it is already written: a replayed input cannot double an output. False when skipped.

    Redis must hold `commit.previous`, the offset the writer last saw there; another offset means another
    writer moved it meanwhile (a worker that lost its partition still folding), and LeaseLost is raised."""
    key = names.applied(engine)
    while True:
        with client.pipeline(transaction=True) as pipe:
            try:
                pipe.watch(key)  # type: ignore[no-untyped-call]
                raw = pipe.hget(key, "offset")
                applied = -1 if raw is None else int(raw)
                if applied >= commit.offset:
                    return False
                if applied != commit.previous:
                    raise LeaseLost(f"{key} is at {applied}, not {commit.previous}: another writer is folding the same input")
                pipe.multi()
                _queue_outputs(pipe, names, commit.outputs)
                _queue_dead(pipe, names, commit.dead, commit.processor)
                pipe.hset(key, mapping={"offset": commit.offset, "counters": to_json(commit.counters)})
                pipe.execute()
                return True
            except redis.WatchError:
                continue  # another writer moved the offset: look again


@dataclass(frozen=True, slots=True)
class EngineCommit:
    """What one fold of an engine's input writes: `offset` is the input's last offset it covers."""

    offset: int
    previous: int  # the offset the writer last saw in Redis (-1: none)
    outputs: Sequence[Output]
    dead: Sequence[Mapping[str, Any]]
    counters: Mapping[str, int]
    processor: str


def applied_state(client: redis.Redis, names: Names, engine: str) -> tuple[int, dict[str, int]]:
    """The last input offset whose outputs `commit_once` wrote for `engine` (-1 before any), and the ledger counters then."""
    raw: dict[bytes, bytes] = client.hgetall(names.applied(engine))  # type: ignore[assignment]
    if b"offset" not in raw:
        return -1, {}
    return int(raw[b"offset"]), json.loads(raw[b"counters"])


def _queue_outputs(pipe: Any, names: Names, outputs: Sequence[Output]) -> None:
    for output in outputs:
        if isinstance(output, StreamOutput):
            pipe.xadd(names.stream(output.stream), dict(output.fields), maxlen=names.maxlen(output.stream), approximate=True)
        elif isinstance(output, ControlOutput):
            pipe.hset(names.control(output.component), output.setting, output.value)
        elif output.value is None:
            pipe.hdel(names.latest(output.table), output.field)
        else:
            pipe.hset(names.latest(output.table), output.field, output.value)


class RuntimeMetrics:
    """The runtime's own figures, published to `{prefix}:runtime` (wall-clock based: they describe the runtime, not the data)."""

    def __init__(self) -> None:
        self.published_at = -float("inf")
        self.server_restarts_total = 0
        self._commit_s: list[float] = []
        self._events = self._entries = self._commits = 0
        self._since = time.monotonic()

    def due(self, interval_s: float) -> bool:
        return time.monotonic() - self.published_at >= interval_s

    def committed(self, duration_s: float, reads: Reads) -> None:
        self._commits += 1
        self._commit_s.append(duration_s)
        for _, prepared in reads:
            self._entries += len(prepared.ack_ids)
            self._events += sum(item.decoded.event_count for item in prepared.items if isinstance(item, BatchItem))

    def report(self, now: float, counters: Mapping[str, int], *, lag: int | None, pending: int | None) -> dict[str, Any]:
        elapsed_s = max(now - self._since, 1e-9)
        latencies = sorted(self._commit_s)
        report = {
            **counters,
            "lag_entries": lag,
            "pending_entries": pending,
            "events_per_s": self._events / elapsed_s,
            "entries_per_s": self._entries / elapsed_s,
            "commits_per_s": self._commits / elapsed_s,
            "commit_ms_p50": 1000 * latencies[len(latencies) // 2] if latencies else None,
            "commit_ms_p99": 1000 * latencies[int(len(latencies) * 0.99)] if latencies else None,
            "server_restarts_total": self.server_restarts_total,
            "reported_at_s": time.time(),
        }
        self._commit_s.clear()
        self._events = self._entries = self._commits = 0
        self._since = self.published_at = now
        return report


class Ticker:
    """Appends a time mark to the event log every interval, so windows close and silent components go stale."""

    def __init__(self, *, url: str, names: Names, settings: RuntimeSettings = RuntimeSettings(), clock: Callable[[], float] = time.time) -> None:
        self.names, self.settings, self._clock = names, settings, clock
        self._client = connect(url, settings)
        self._lease = Lease(self._client, names.lease("ticker"), settings.lease_ttl_s)

    def run(self, stop: threading.Event) -> None:
        backoff = Backoff(self.settings, "ticker")
        active = False
        while not stop.wait(0 if not active else self.settings.tick_interval_s):
            try:
                active = self._lease.acquire()
                if active:
                    self._client.xadd(self.names.events, {TICK_FIELD: pack(self._clock())}, maxlen=EVENTS_MAXLEN, approximate=True)
                else:
                    stop.wait(self.settings.lease_ttl_s / 5)
                backoff.succeeded()
            except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
                backoff.failed(exc, stop)
        if active:
            self._lease.release()
        self._client.close()


def ensure_group(client: redis.Redis, stream: str, group: str, start_id: str) -> None:
    """Create a consumer group (and its stream) unless it exists; BUSYGROUP means it does."""
    try:
        client.xgroup_create(stream, group, id=start_id, mkstream=True)
        log.info("created consumer group %s", group)
    except redis.ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise


def load_checkpoint(client: redis.Redis, names: Names, processor: str) -> tuple[Parts, Ledger]:
    """A processor's committed state parts and its ledger (what a restarted instance resumes from)."""
    raw: dict[bytes, bytes] = client.hgetall(names.checkpoint(processor))  # type: ignore[assignment]
    parts = parse_checkpoint(raw)
    return parts.get(PROCESSOR_PART, {}), Ledger.restore(parts.get(LEDGER_PART, {}))


def committed_counters(client: redis.Redis, names: Names, processor: str) -> dict[str, int]:
    """A processor's ledger counters as of its last commit, in one O(1) read."""
    raw = client.hget(names.checkpoint(processor), pack([LEDGER_PART, COUNTERS_PART]))
    return dict(unpack(raw)) if isinstance(raw, bytes) else {}


def read_log(client: redis.Redis, stream: str, chunk: int = 256) -> Iterator[list[Entry]]:
    """The whole retained log, oldest first, in chunks (XRANGE: no group, no acknowledgement)."""
    start = "-"
    while True:
        entries: list[Entry] = client.xrange(stream, min=start, count=chunk)  # type: ignore[assignment]
        if not entries:
            return
        yield entries
        start = "(" + entries[-1][0].decode()


def write_outputs(client: redis.Redis, names: Names, outputs: Sequence[Output]) -> None:
    """Outputs without a checkpoint or an acknowledgement: what a replay under another prefix writes."""
    pipe = client.pipeline(transaction=False)
    _queue_outputs(pipe, names, outputs)
    pipe.execute()


def clear_derived(client: redis.Redis, names: Names) -> None:
    """Delete every derived stream and latest-value table under `names` (a replay's target prefix)."""
    client.delete(*(names.stream(short) for short in DERIVED_STREAMS), *(names.latest(table) for table in LATEST_TABLES))


def read_derived(client: redis.Redis, names: Names, short: str) -> list[dict[str, str]]:
    entries: list[tuple[bytes, dict[bytes, bytes]]] = client.xrange(names.stream(short))  # type: ignore[assignment]
    return [{k.decode(): v.decode() for k, v in fields.items()} for _, fields in entries]


def runtime_report(client: redis.Redis, names: Names) -> dict[str, Any]:
    """Each processor's published runtime figures."""
    reports: dict[bytes, bytes] = client.hgetall(names.runtime)  # type: ignore[assignment]
    return {k.decode(): json.loads(v) for k, v in reports.items()}
