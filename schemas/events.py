"""The event types a pipeline emits, and the batch envelope that carries them.

Events are frozen value objects. On the wire each event is a positional row
`[type_tag, version, *fields]` (see `schemas.codec`): rows are what the emitter's
hot path builds, so that encoding costs no per-event object creation.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Final, Literal, Mapping, Union

Scalar = Union[str, int, float, bool, None]

TAG_OPERATION: Final = 1
TAG_COUNT: Final = 2
TAG_SYSTEM: Final = 3
TAG_LIFECYCLE: Final = 4
TAG_COMMAND: Final = 5
TAG_IN_PROGRESS: Final = 6

# `configured`: the component now uses the settings in `config` (it obeyed a control setting).
# `registered`: the component declares what it depends on (`depends_on`) after it started.
LifecycleKind = Literal["started", "stopped", "heartbeat", "configured", "registered"]
LIFECYCLE_KINDS: Final = ("started", "stopped", "heartbeat", "configured", "registered")
SampleScope = Literal["process", "host"]
CommandAction = Literal["ack", "unack", "silence", "expire_silence"]
COMMAND_ACTIONS: Final = ("ack", "unack", "silence", "expire_silence")


@dataclass(frozen=True, slots=True, kw_only=True)
class EventBase:
    """What every event has: when, and who emitted it (pid and host come from the batch envelope)."""

    timestamp_s: float
    component: str
    pid: int = 0
    host: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class OperationEvent(EventBase):
    """One timed unit of work of a component (a parse, a cache lookup, an extraction)."""

    TAG: ClassVar[int] = TAG_OPERATION
    VERSION: ClassVar[int] = 2
    operation: str
    duration_ms: float
    ok: bool
    error_type: str | None = None
    cache_hits: int = 0
    cache_misses: int = 0
    counters: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class CountEvent(EventBase):
    """A domain counter increment outside any operation (`files_processed += 1`)."""

    TAG: ClassVar[int] = TAG_COUNT
    VERSION: ClassVar[int] = 1
    name: str
    value: float


@dataclass(frozen=True, slots=True, kw_only=True)
class SystemSample(EventBase):
    """Resource use of one process, or of its whole host (`scope`)."""

    TAG: ClassVar[int] = TAG_SYSTEM
    VERSION: ClassVar[int] = 2
    scope: SampleScope
    cpu_percent: float
    rss_bytes: int
    memory_total_bytes: int
    read_bytes: int
    write_bytes: int
    threads: int
    open_files: int
    # Cumulative network counters of the host (v2); None where not measured: per process, and in v1 samples.
    net_sent_bytes: int | None = None
    net_recv_bytes: int | None = None
    net_sent_packets: int | None = None
    net_recv_packets: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class LifecycleEvent(EventBase):
    """A component started, stopped, or is still alive; carries its configuration and, when declared, its dependencies.

    `depends_on` None means "not declared here" (the registry keeps what it knew); a tuple, even empty, replaces it.
    """

    TAG: ClassVar[int] = TAG_LIFECYCLE
    VERSION: ClassVar[int] = 2
    kind: LifecycleKind
    config: Mapping[str, Scalar] = field(default_factory=dict)
    depends_on: tuple[str, ...] | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class InProgressSample(EventBase):
    """How many calls of one operation were in progress (a gauge, as prometheus_client's track_inprogress),
    now and at the most since the previous sample of that operation."""

    TAG: ClassVar[int] = TAG_IN_PROGRESS
    VERSION: ClassVar[int] = 1
    operation: str
    in_progress: int
    peak: int


@dataclass(frozen=True, slots=True, kw_only=True)
class AlertCommand(EventBase):
    """An operator's decision about alerts, kept in the event log so that it survives restarts and replays.

    `ack` and `unack` target an alert fingerprint; `silence` creates the silence
    named by `target` for alerts whose labels match every matcher (label to
    "=v", "!=v", "=~regex" or "!~regex"); `expire_silence` ends one early.
    `expires_in_s` counts from `timestamp_s`; `component` is who sent it.
    """

    TAG: ClassVar[int] = TAG_COMMAND
    VERSION: ClassVar[int] = 1
    action: CommandAction
    target: str
    by: str = ""
    reason: str = ""
    expires_in_s: float = 0.0
    matchers: Mapping[str, Scalar] = field(default_factory=dict)


Event = Union[OperationEvent, CountEvent, SystemSample, LifecycleEvent, AlertCommand, InProgressSample]
EVENT_TYPES: Final[tuple[type[Event], ...]] = (
    OperationEvent,
    CountEvent,
    SystemSample,
    LifecycleEvent,
    AlertCommand,
    InProgressSample,
)


@dataclass(frozen=True, slots=True, kw_only=True)
class Batch:
    """What one emitter sends as one stream entry.

    `seq` is gap-free per `producer_id`, so a consumer can deduplicate retried
    entries and detect lost ones. The drop counters are cumulative, so a lost
    batch never hides earlier drops.
    """

    VERSION: ClassVar[int] = 1
    producer_id: str
    seq: int
    sent_at_s: float
    component: str
    pid: int
    host: str
    dropped_total: int
    invalid_total: int
    events: tuple[Event, ...]
