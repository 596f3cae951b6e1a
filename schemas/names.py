"""Every stream, consumer-group and key name, built from one prefix."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final
from urllib.parse import urlsplit

DEFAULT_PREFIX: Final = "pipepulse"
_TOPIC: Final = re.compile(r"[A-Za-z0-9._-]+")
# The field of the latest-statistics tables that holds the pipeline-wide view (every other field is a component).
PIPELINE_FIELD: Final = "__pipeline__"

# Raw batches; approximate trimming keeps Redis memory bounded while leaving
# minutes of backlog at 1M events/s (1,000-event batches) and days at typical rates.
EVENTS_MAXLEN: Final = 100_000
# Dead letters are rare and kept for inspection; the cap only stops a flood of bad input from growing without bound.
DEAD_MAXLEN: Final = 10_000

DERIVED_STREAMS: Final = ("stats", "stats_1m", "alerts", "health", "forecasts", "recommendations", "actions")

# Derived streams keep history at two resolutions for trends and reports: one
# entry per closed window, so the caps are durations. 10 s windows for 6 hours:
STATS_MAXLEN: Final = 6 * 3600 // 10
# and the 1 m roll-ups for 7 days.
STATS_1M_MAXLEN: Final = 7 * 24 * 60
# Alert transitions are the alert history: rare, and kept long.
ALERTS_MAXLEN: Final = 50_000
DERIVED_MAXLEN: Final = {"stats": STATS_MAXLEN, "stats_1m": STATS_1M_MAXLEN, "alerts": ALERTS_MAXLEN}
# Any other derived stream: enough for a day of one entry per 10 s.
DEFAULT_DERIVED_MAXLEN: Final = 8640
# Latest-value tables (hashes, one field per component) that readers fetch in O(1).
# `alerts` holds the active set (one field per fingerprint), `silences` the silences in force;
# `health` and `forecasts` the newest snapshots.
# `recommendations` the advice in force (one field per component and kind), `optimizer` its mode and settings;
# `components` the component registry (one field per component: status, processes, configuration, dependencies).
LATEST_TABLES: Final = ("stats", "stats_rollup", "stats_live", "producers", "components", "alerts", "silences", "health", "forecasts", "recommendations", "optimizer")
# Operators switch the optimizer (kill switch, dry run) through this stream: the switch is part of the audit trail.
COMMAND_STREAMS: Final = ("optimizer_commands",)
# Kafka topics of the Faust engine: `events` (the batches, partitioned by component) and `ordered`
# (one partition: the partitions' records merged into the one log the monitor folds).
TOPICS: Final = ("events", "ordered")


KAFKA_SCHEME: Final = "kafka"  # a kafka:// URL names the Faust engine's broker, where a Redis URL would go


def kafka_servers(url: str) -> str:
    """`host:port[,host:port]` from `kafka://host:port[,host:port]`, as Kafka clients take it; ValueError for anything else."""
    parts = urlsplit(url)
    if parts.scheme != KAFKA_SCHEME or not parts.netloc or parts.path not in ("", "/"):
        raise ValueError(f"expected kafka://host:port[,host:port], got {url!r}")
    return parts.netloc


@dataclass(frozen=True, slots=True)
class Names:
    """The public names under one prefix: `Names("pipepulse").events == "pipepulse:events"`."""

    prefix: str = DEFAULT_PREFIX

    def __post_init__(self) -> None:
        if not self.prefix or any(c.isspace() for c in self.prefix):
            raise ValueError(f"stream prefix must be non-empty without spaces, got {self.prefix!r}")

    def stream(self, short: str) -> str:
        """`events`, `dead`, one of DERIVED_STREAMS or of COMMAND_STREAMS under the prefix."""
        if short not in ("events", "dead", *DERIVED_STREAMS, *COMMAND_STREAMS):
            raise ValueError(f"unknown stream {short!r}")
        return f"{self.prefix}:{short}"

    @property
    def events(self) -> str:
        return self.stream("events")

    @property
    def dead(self) -> str:
        return self.stream("dead")

    def topic(self, short: str) -> str:
        """A Kafka topic of the Faust engine (Kafka's names allow only letters, digits, `.`, `_` and `-`): `pipepulse.events`."""
        if short not in TOPICS:
            raise ValueError(f"unknown topic {short!r}")
        name = f"{self.prefix}.{short}"
        if not _TOPIC.fullmatch(name) or len(name) > 249:
            raise ValueError(f"{name!r} is not a valid Kafka topic name (letters, digits, '.', '_' and '-', at most 249)")
        return name

    def group(self, processor: str) -> str:
        """One consumer group per processor, so each processor sees every entry once."""
        return f"{self.prefix}:group:{processor}"

    def latest(self, table: str) -> str:
        """A hash of the newest value per component (see LATEST_TABLES)."""
        return f"{self.prefix}:latest:{table}"

    def checkpoint(self, processor: str) -> str:
        """A processor's state, one hash field per part, committed with every batch; no TTL: it is the state."""
        return f"{self.prefix}:checkpoint:{processor}"

    def lease(self, holder: str) -> str:
        """Who is the active instance; expires (a TTL) so that a standby takes over when the holder dies."""
        return f"{self.prefix}:lease:{holder}"

    def applied(self, engine: str) -> str:
        """A hash: the last offset of `engine`'s input whose outputs are written (`offset`), and the counters then: what makes its writes idempotent."""
        return f"{self.prefix}:applied:{engine}"

    def control(self, component: str) -> str:
        """A component's control settings, one hash field per setting; only the optimizer writes here."""
        return f"{self.prefix}:control:{component}"

    @property
    def demo_faults(self) -> str:
        """Faults injected into the demo pipeline: a hash of fault kind to the event time it ends."""
        return f"{self.prefix}:demo:faults"

    @property
    def runtime(self) -> str:
        """A hash of each processor's own health (lag, throughput, commit latency): pipepulse monitors itself."""
        return f"{self.prefix}:runtime"

    def maxlen(self, short: str) -> int:
        return DERIVED_MAXLEN.get(short, DEFAULT_DERIVED_MAXLEN)
