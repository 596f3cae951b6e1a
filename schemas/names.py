"""Every stream, consumer-group and key name, built from one prefix."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

DEFAULT_PREFIX: Final = "pipepulse"

# Raw batches; approximate trimming keeps Redis memory bounded while leaving
# minutes of backlog at 1M events/s (1,000-event batches) and days at typical rates.
EVENTS_MAXLEN: Final = 100_000
# Dead letters are rare and kept for inspection; the cap only stops a flood of bad input from growing without bound.
DEAD_MAXLEN: Final = 10_000

DERIVED_STREAMS: Final = ("stats", "alerts", "health", "forecasts", "recommendations", "actions")


@dataclass(frozen=True, slots=True)
class Names:
    """The public names under one prefix: `Names("pipepulse").events == "pipepulse:events"`."""

    prefix: str = DEFAULT_PREFIX

    def __post_init__(self) -> None:
        if not self.prefix or any(c.isspace() for c in self.prefix):
            raise ValueError(f"stream prefix must be non-empty without spaces, got {self.prefix!r}")

    def stream(self, short: str) -> str:
        """`events`, `dead` or one of DERIVED_STREAMS under the prefix."""
        if short not in ("events", "dead", *DERIVED_STREAMS):
            raise ValueError(f"unknown stream {short!r}")
        return f"{self.prefix}:{short}"

    @property
    def events(self) -> str:
        return self.stream("events")

    @property
    def dead(self) -> str:
        return self.stream("dead")

    def group(self, processor: str) -> str:
        """One consumer group per processor, so each processor sees every entry once."""
        return f"{self.prefix}:group:{processor}"
