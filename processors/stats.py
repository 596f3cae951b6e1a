"""The rolling-statistics processor: folds batches into per-component, per-operation, per-producer
and pipeline-wide window statistics.

Windows are event-time: a fixed window [start, end) closes once stream time
(the newest event or tick seen) reaches end + grace; later events for it are
counted as late per component, never merged. Sliding views (last 10 s, last
1 m) are refreshed at every tick so that alert rules need not wait for a close.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from schemas.cardinality import OVERFLOW_NAME
from schemas.events import TAG_COMMAND, TAG_COUNT, TAG_IN_PROGRESS, TAG_LIFECYCLE, TAG_OPERATION, TAG_SYSTEM
from schemas.names import PIPELINE_FIELD

from processors import registry
from processors.contract import BatchItem, Item, LatestOutput, Output, PartKey, Parts, StreamOutput, Tick, to_json
from processors.report import operation_stats, system_stats
from processors.summary import OperationSummary, SystemSummary, fold_operations
from processors.windows import MINUTE_S, SLOT_S, SeriesKey, Summary, TieredWindows, combined

ROLLUP_MINUTES = (1, 5, 15)
LIVE_WINDOW_S = 10
LIVE_LONG_S = 60
# A lean per-component view: the producers' series sum to the component's operations, so no per-operation merges.
LEAN_FAMILIES = frozenset({"producer", "count", "process"})


@dataclass(frozen=True, slots=True, kw_only=True)
class StatsSettings:
    window_s: int = 10
    grace_s: float = 0.25  # emitters flush every 50 ms; more grace only delays every snapshot
    stale_after_s: float = 30.0  # three windows without an event or heartbeat
    forget_after_s: float = 3600.0  # a component silent this long leaves the snapshots and the state
    max_components: int = 500
    max_operations: int = 200  # per component
    max_counters: int = 64  # per component
    max_producers: int = 2000
    apdex_t_ms: float = 500.0  # Apdex target: within T satisfied, within 4 T tolerating


class StatsProcessor:
    name = "stats"

    def __init__(self, settings: StatsSettings = StatsSettings()) -> None:
        self.settings = settings
        self._reset()

    def _reset(self) -> None:
        settings = self.settings
        self._windows = TieredWindows(settings.window_s)
        self._stream_time_s = -math.inf
        self._closed_until_s: int | None = None
        self._components: dict[str, dict[str, Any]] = {}
        self._producers: dict[str, dict[str, Any]] = {}
        self._dirty: set[PartKey] = set()
        self._deleted: set[PartKey] = set()
        # What the last apply() rendered, for the stages that judge statistics (processors.monitor).
        self.documents: list[tuple[str, dict[str, Any]]] = []
        # Derived, not state: rebuilt after a restore with the same grouping, so outputs stay identical.
        self._minute_cache: tuple[tuple[int, int], dict[SeriesKey, Summary]] = ((0, 0), {})
        self._sliding_cache: dict[str | None, tuple[tuple[int, tuple[int, ...]], dict[SeriesKey, Summary]]] = {}

    @property
    def stream_time_s(self) -> float:
        """Event time so far: the newest event or tick seen."""
        return self._stream_time_s

    def knows(self, component: str) -> bool:
        return component in self._components

    # -- folding

    def apply(self, items: Sequence[Item]) -> list[Output]:
        outputs: list[Output] = []
        self.documents = []
        for item in items:
            if isinstance(item, Tick):
                self._advance(item.time_s)
                self._close_windows(outputs)
                self._emit_live(outputs)
                outputs += registry.publish(self._components, self._producers, self._stream_time_s, self.settings.stale_after_s)
            elif isinstance(item, BatchItem):
                self._apply_batch(item)
                self._close_windows(outputs)
        return outputs

    def _advance(self, time_s: float) -> None:
        if self._closed_until_s is None:
            window = self.settings.window_s
            self._closed_until_s = math.floor(time_s / window) * window
        self._stream_time_s = max(self._stream_time_s, time_s)
        self._dirty.add(("clock",))

    def _apply_batch(self, item: BatchItem) -> None:
        envelope = item.decoded.envelope
        columns = {tag: c for tag, c in item.decoded.columns.items() if tag != TAG_COMMAND}
        if not columns and item.decoded.columns:
            return  # operator commands are not telemetry: the alert evaluator applies them
        component = self._admit(self._components, envelope.component, self.settings.max_components)
        info = self._components.setdefault(
            component, {"first_seen_s": None, "last_seen_s": -math.inf, "late_events_total": 0, "state": "running", "config": {}, "depends_on": [], "names": {}}
        )
        producer_id, producer = self._producer(item, component)
        newest_s = -math.inf
        for tag, column in columns.items():
            timestamps = column.fields["timestamp_s"]
            newest_s = max(newest_s, max(timestamps))
            if self._closed_until_s is None:
                self._advance(min(timestamps))
            closed_until_s = self._closed_until_s or 0
            keep = None
            if min(timestamps) < closed_until_s:
                keep = np.asarray(timestamps, dtype=np.float64) >= closed_until_s
                info["late_events_total"] += int(len(keep) - keep.sum())
            if tag == TAG_OPERATION:
                self._apply_operations(component, info, producer_id, column.fields, keep)
            elif tag == TAG_COUNT:
                self._apply_counts(component, info, column.fields, keep)
            elif tag == TAG_SYSTEM:
                self._apply_system(component, envelope.pid, envelope.host, column.fields, keep)
            elif tag == TAG_LIFECYCLE:
                for kind, config, depends_on in zip(column.fields["kind"], column.fields["config"], column.fields["depends_on"]):
                    if kind == "stopped":
                        producer["stopped"] = True
                        producer["in_progress"] = {}  # a process that stopped runs nothing
                        # The component stops with its last live process (of a pool, one leaving stops nothing).
                        info["state"] = "running" if self._live_producers(component) else "stopped"
                    elif kind != "heartbeat":
                        info["state"] = "running"
                    if kind in ("started", "configured"):
                        info["config"].update(config)  # several producers (and restarts) of one component add up
                    if depends_on is not None:  # declared: replaces what was known (None keeps it, across restarts too)
                        info["depends_on"] = sorted(set(depends_on) - {component})
            elif tag == TAG_IN_PROGRESS:
                self._apply_in_progress(info, producer, column.fields)
            producer["events_total"] += len(column)
        if newest_s > -math.inf:
            if "first_seen_s" in info and info["first_seen_s"] is None:  # its first event: the registration time (unknown if restored from before it was kept)
                info["first_seen_s"] = min(min(c.fields["timestamp_s"]) for c in columns.values())
            info["last_seen_s"] = max(info["last_seen_s"], newest_s)
            producer["last_seen_s"] = max(producer["last_seen_s"], newest_s)
            self._advance(newest_s)
        self._dirty.update((("component", component), ("producer", producer_id)))

    def _producer(self, item: BatchItem, component: str) -> tuple[str, dict[str, Any]]:
        envelope = item.decoded.envelope
        producer_id = self._admit(self._producers, envelope.producer_id, self.settings.max_producers)
        producer = self._producers.setdefault(
            producer_id,
            {"component": component, "pid": envelope.pid, "host": envelope.host, "batches_total": 0, "events_total": 0, "missing_batches_total": 0, "last_seen_s": -math.inf},
        )
        producer["batches_total"] += 1
        producer["missing_batches_total"] += item.missing_batches
        producer["dropped_total"] = envelope.dropped_total  # cumulative on the wire
        producer["invalid_total"] = envelope.invalid_total + len(item.decoded.rejected)
        return producer_id, producer

    @staticmethod
    def _admit(known: Mapping[str, Any], name: str, limit: int) -> str:
        """Cardinality cap on untrusted names: past `limit`, new names share one overflow entry."""
        return name if name in known or len(known) < limit else OVERFLOW_NAME

    def _admit_known(self, known: dict[str, None], name: str, limit: int) -> str:
        """Admit a name and remember it, so later batches see the same cap."""
        admitted = self._admit(known, name, limit)
        known.setdefault(admitted)
        return admitted

    def _names(self, info: dict[str, Any], kind: str, names: Sequence[str], limit: int) -> Sequence[str]:
        known: dict[str, None] = info["names"].setdefault(kind, {})
        mapping: dict[str, str] = {}
        for name in dict.fromkeys(names):  # first-appearance order, so a replay admits the same names
            mapping[name] = self._admit_known(known, name, limit)
        return names if all(k == v for k, v in mapping.items()) else [mapping[n] for n in names]

    def _apply_operations(self, component: str, info: dict[str, Any], producer_id: str, fields: Mapping[str, Sequence[Any]], keep: np.ndarray | None) -> None:
        names = self._names(info, "operations", fields["operation"], self.settings.max_operations)
        admit_counter = functools.partial(self._admit_known, info["names"].setdefault("counters", {}), limit=self.settings.max_counters)
        per_operation, per_slot = fold_operations(fields, names, keep, admit_counter)
        for (slot_s, operation), partial in per_operation.items():
            self._windows.add(("op", component, operation), slot_s, partial)
        for slot_s, partial in per_slot.items():
            self._windows.add(("producer", component, producer_id), slot_s, partial)

    def _apply_counts(self, component: str, info: dict[str, Any], fields: Mapping[str, Sequence[Any]], keep: np.ndarray | None) -> None:
        names = self._names(info, "counters", fields["name"], self.settings.max_counters)
        for i, (timestamp_s, value) in enumerate(zip(fields["timestamp_s"], fields["value"])):
            if keep is None or keep[i]:
                self._windows.add(("count", component), math.floor(timestamp_s), OperationSummary(counters={names[i]: value}))

    def _apply_in_progress(self, info: dict[str, Any], producer: dict[str, Any], fields: Mapping[str, Sequence[Any]]) -> None:
        """Gauges: the newest report per operation of this producer wins; an idle operation is dropped."""
        gauges: dict[str, list[Any]] = producer.setdefault("in_progress", {})
        names = self._names(info, "operations", fields["operation"], self.settings.max_operations)
        for timestamp_s, name, running, peak in zip(fields["timestamp_s"], names, fields["in_progress"], fields["peak"]):
            held = gauges.get(name)
            if held is not None and held[0] > timestamp_s:
                continue  # an older report arriving late
            if running or peak:
                gauges[name] = [timestamp_s, running, max(running, peak)]
            else:
                gauges.pop(name, None)

    def _apply_system(self, component: str, pid: int, host: str, fields: Mapping[str, Sequence[Any]], keep: np.ndarray | None) -> None:
        names = tuple(fields)
        for i, values in enumerate(zip(*fields.values())):
            if keep is None or keep[i]:
                sample = dict(zip(names, values))
                key: SeriesKey = ("process", component, f"{pid}@{host}") if sample["scope"] == "process" else ("host", host)
                summary = SystemSummary()
                summary.add(sample["timestamp_s"], sample)
                self._windows.add(key, math.floor(sample["timestamp_s"]), summary)

    # -- closing windows

    def _close_windows(self, outputs: list[Output]) -> None:
        if self._closed_until_s is None:
            return
        window = self.settings.window_s
        last_end = math.floor((self._stream_time_s - self.settings.grace_s) / window) * window
        while self._closed_until_s + window <= last_end:
            start = self._closed_until_s
            horizon = last_end - max(ROLLUP_MINUTES) * MINUTE_S
            horizon -= horizon % MINUTE_S
            if start < horizon and not any(start <= s < horizon for s in self._windows.data_starts()):
                # A jump in time over empty windows: report the last 15 minutes of them, not every one.
                start = horizon
            self._close(start, outputs)
            self._closed_until_s = start + window
            self._dirty.add(("clock",))

    def _close(self, start_s: int, outputs: list[Output]) -> None:
        window = self.settings.window_s
        end_s = start_s + window
        self._windows.close_bucket(start_s)
        document = self._document(self._windows.merged(window, [start_s]), start_s, end_s)
        self.documents.append(("window", document))
        # `pipeline` repeats the pipeline-wide part alone, so charts need not decode every component of every window.
        pipeline = {key: value for key, value in document.items() if key not in ("components", "hosts")}
        outputs.append(StreamOutput("stats", {"window": f"{window}s", "end_s": str(end_s), "json": to_json(document), "pipeline": to_json(pipeline)}))
        outputs.extend(self._latest("stats", {f"{window}s": document}))
        if end_s % MINUTE_S == 0:
            views = {
                f"{minutes}m": self._document(self._windows.merged(MINUTE_S, range(end_s - minutes * MINUTE_S, end_s, MINUTE_S)), end_s - minutes * MINUTE_S, end_s)
                for minutes in ROLLUP_MINUTES
            }
            outputs.append(StreamOutput("stats_1m", {"window": "1m", "end_s": str(end_s), "json": to_json(views)}))
            outputs.extend(self._latest("stats_rollup", views))
        # Every known producer, so a reader sees loss and drops per producer even for one that has gone quiet.
        outputs.extend(LatestOutput("producers", producer_id, to_json(self._producer_info(producer_id))) for producer_id in sorted(self._producers))
        self._windows.expire(SLOT_S, min(start_s, end_s - LIVE_WINDOW_S))  # the sliding 10 s view still reads them, whatever window_s
        self._windows.expire(window, end_s - LIVE_LONG_S)
        self._windows.expire(MINUTE_S, end_s - max(ROLLUP_MINUTES) * MINUTE_S)
        self._forget(end_s, outputs)

    def _emit_live(self, outputs: list[Output]) -> None:
        """Sliding views at a tick: the last 10 s at 1 s resolution, the last minute at window resolution.

        Both end at stream time and include the slot still filling, so alert rules see a fault
        as soon as its first batch arrives rather than when its second ends.
        """
        now_s = math.floor(self._stream_time_s)
        window = self.settings.window_s
        first_bucket = now_s - now_s % window - (LIVE_LONG_S - window)
        views = {"10s": self.sliding(), "1m": self._document(self._live_minute(first_bucket, now_s), first_bucket, self._stream_time_s)}
        self.documents.append(("live", views))
        outputs.extend(self._latest("stats_live", views))

    def sliding(self, component: str | None = None) -> dict[str, Any]:
        """The last 10 s up to stream time (the slot still filling included).

        With a component, a lean view of it alone for alert rules judged on every batch: its totals
        (from its producers' series, a few merges instead of one per operation) and its processes.
        """
        now_s = math.floor(self._stream_time_s)
        start_s = now_s - LIVE_WINDOW_S + 1
        complete = range(start_s, now_s)
        families = None if component is None else LEAN_FAMILIES
        key = (start_s, self._windows.slot_versions(complete))
        cached = self._sliding_cache.get(component)
        if cached is None or cached[0] != key:  # the complete slots change only with late events: merge them once a second
            cached = self._sliding_cache[component] = (key, self._windows.merged(SLOT_S, complete, component, families))
        summaries = combined(cached[1], self._windows.merged(SLOT_S, [now_s], component, families))
        return self._document(summaries, start_s, self._stream_time_s, component)

    def _live_minute(self, first_bucket_s: int, now_s: int) -> dict[SeriesKey, Summary]:
        """The closed buckets, whose merge is cached until the next close (it cannot change), then the open ones."""
        closed_until_s = max(first_bucket_s, self._closed_until_s or first_bucket_s)
        if self._minute_cache[0] != (first_bucket_s, closed_until_s):
            self._minute_cache = ((first_bucket_s, closed_until_s), self._windows.merged(self.settings.window_s, range(first_bucket_s, closed_until_s, self.settings.window_s)))
        return combined(self._minute_cache[1], self._windows.merged(SLOT_S, range(closed_until_s, now_s + 1)))  # open buckets, from their slots

    def _forget(self, now_s: int, outputs: list[Output]) -> None:
        cutoff = now_s - self.settings.forget_after_s
        gone = frozenset(c for c, info in self._components.items() if info["last_seen_s"] < cutoff)
        for component in sorted(gone):
            del self._components[component]
            self._dirty.discard(("component", component))
            self._deleted.add(("component", component))
            self._sliding_cache.pop(component, None)
            for table in ("stats", "stats_rollup", "stats_live", "components"):
                outputs.append(LatestOutput(table, component, None))
        for producer_id in [p for p, info in self._producers.items() if info["last_seen_s"] < cutoff]:
            del self._producers[producer_id]
            outputs.append(LatestOutput("producers", producer_id, None))
            self._dirty.discard(("producer", producer_id))
            self._deleted.add(("producer", producer_id))
        if gone:
            self._windows.forget(gone, where=1)

    # -- rendering

    def _latest(self, table: str, views: Mapping[str, Mapping[str, Any]]) -> list[Output]:
        """One field per component, plus the pipeline-wide one, each holding every view by name."""
        fields: dict[str, dict[str, Any]] = {}
        for view, document in views.items():
            for component, body in document["components"].items():
                fields.setdefault(component, {})[view] = body
            fields.setdefault(PIPELINE_FIELD, {})[view] = {key: value for key, value in document.items() if key != "components"}
        return [LatestOutput(table, field, to_json(body)) for field, body in fields.items()]

    def _document(self, summaries: Mapping[SeriesKey, Summary], start_s: int, end_s: float, only: str | None = None) -> dict[str, Any]:
        window_s = max(end_s - start_s, 1)
        pipeline = OperationSummary()
        components: dict[str, dict[str, Any]] = {}
        hosts: dict[str, Any] = {}
        for component, info in self._components.items() if only is None else [(only, self._components[only])]:
            stale = registry.is_stale(info["last_seen_s"], self._stream_time_s, self.settings.stale_after_s)
            components[component] = {
                "last_seen_s": _finite_or_none(info["last_seen_s"]),
                "late_events_total": info["late_events_total"],
                "state": info["state"],
                "stale": stale,
                "config": info["config"],
                "depends_on": info.get("depends_on", []),
            }
        if only is None:  # not in the lean per-batch view: it would scan every producer on every batch
            self._concurrency(components)
        totals: dict[str, OperationSummary] = {}
        for key, summary in sorted(summaries.items()):
            family = key[0]
            if family == "host":
                hosts[key[1]] = system_stats(summary)  # type: ignore[arg-type]
                continue
            body = components.get(key[1])
            if body is None:
                continue
            if family == "op":
                body.setdefault("operations", {})[key[2]] = operation_stats(summary, window_s, self.settings.apdex_t_ms)  # type: ignore[arg-type]
            elif family == "producer" and only is None:
                body.setdefault("producers", {})[key[2]] = {**operation_stats(summary, window_s, self.settings.apdex_t_ms), **self._producer_info(key[2])}  # type: ignore[arg-type]
            elif family == "process":
                body.setdefault("processes", {})[key[2]] = system_stats(summary)  # type: ignore[arg-type]
            if family in ("op", "count") or family == "producer" and only is not None:
                totals.setdefault(key[1], OperationSummary()).merge(summary)  # type: ignore[arg-type]
                if only is None:
                    pipeline.merge(summary)  # type: ignore[arg-type]
        for component, body in components.items():
            # A stale component with nothing in this window gets no stats: stale, never its last values.
            if not body["stale"] or component in totals:
                body["stats"] = operation_stats(totals.get(component, OperationSummary()), window_s, self.settings.apdex_t_ms)
        pipeline_stats = operation_stats(pipeline, window_s, self.settings.apdex_t_ms)
        if only is None:
            pipeline_stats["in_progress"] = {key: sum(body["in_progress"][key] for body in components.values()) for key in ("running", "peak")}
        return {
            "window_s": window_s,
            "start_s": start_s,
            "end_s": end_s,
            "stream_time_s": self._stream_time_s,
            "pipeline": pipeline_stats,
            "components": components,
            "hosts": hosts,
        }

    def _live_producers(self, component: str) -> list[str]:
        """The component's processes that have neither stopped nor gone silent."""
        return [
            producer_id
            for producer_id, producer in self._producers.items()
            if producer["component"] == component and not producer.get("stopped") and not registry.is_stale(producer["last_seen_s"], self._stream_time_s, self.settings.stale_after_s)
        ]

    def _concurrency(self, components: dict[str, dict[str, Any]]) -> None:
        """Calls in progress per component: the latest gauges of its live producers (not stale, not stopped), summed."""
        for body in components.values():
            body["in_progress"] = {"running": 0, "peak": 0, "operations": {}}
        for producer in self._producers.values():
            owner = components.get(producer["component"])
            if owner is None or not producer.get("in_progress") or registry.is_stale(producer["last_seen_s"], self._stream_time_s, self.settings.stale_after_s):
                continue
            concurrency = owner["in_progress"]
            for name, (_, running, peak) in sorted(producer["in_progress"].items()):
                concurrency["running"] += running
                concurrency["peak"] += peak
                concurrency["operations"][name] = concurrency["operations"].get(name, 0) + running

    def _producer_info(self, producer_id: str) -> dict[str, Any]:
        return _json_safe(self._producers.get(producer_id, {}))  # a forgotten producer's last buckets may outlive it

    # -- checkpoint

    def take_changes(self) -> tuple[Parts, set[PartKey]]:
        written, deleted = self._windows.take_changes()
        written.update((key, self._part(key)) for key in self._dirty)
        deleted |= self._deleted
        self._dirty.clear()
        self._deleted.clear()
        return written, deleted - written.keys()

    def _part(self, key: PartKey) -> Any:
        if key == ("clock",):
            return [_finite_or_none(self._stream_time_s), self._closed_until_s]
        table = self._components if key[0] == "component" else self._producers
        return _json_safe(table[str(key[1])])

    def snapshot(self) -> Parts:
        parts = self._windows.snapshot()
        keys: list[PartKey] = [("clock",), *(("component", c) for c in self._components), *(("producer", p) for p in self._producers)]
        parts.update((key, self._part(key)) for key in keys)
        return parts

    def restore(self, parts: Mapping[PartKey, Any]) -> None:
        self._reset()
        for key, value in parts.items():
            if key[0] == "w":
                self._windows.restore_part(key, value)
            elif key == ("clock",):
                stream_time_s, self._closed_until_s = value
                self._stream_time_s = -math.inf if stream_time_s is None else stream_time_s
            else:
                table = self._components if key[0] == "component" else self._producers
                table[str(key[1])] = {k: -math.inf if k == "last_seen_s" and v is None else v for k, v in value.items()}


def _finite_or_none(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _json_safe(info: Mapping[str, Any]) -> dict[str, Any]:
    """-inf ("never seen") becomes None: snapshots and checkpoints carry no non-finite number."""
    return {k: _finite_or_none(v) if isinstance(v, float) else v for k, v in info.items()}
