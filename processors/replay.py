"""Replay: rebuild the derived streams from the event log under another prefix, and compare them with the live ones.

The event log is the source of truth and every processor is a deterministic
fold of it, so a replay of the same log must reproduce the live outputs
exactly. Windows closed before the retained log begins cannot be rebuilt; they
are reported as live-only, not as mismatches.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import redis

from schemas.checks import Limits
from schemas.names import Names

from processors.contract import Processor
from processors.ledger import Ledger
from processors.runtime import clear_derived, prepare, read_derived, read_log, write_outputs

COMPARED_STREAMS = ("stats", "stats_1m")


@dataclass(frozen=True, slots=True, kw_only=True)
class StreamComparison:
    stream: str
    matched: int
    mismatched: tuple[str, ...]  # end_s of windows whose contents differ
    live_only: int
    replay_only: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ReplayReport:
    entries: int
    events: int
    comparisons: tuple[StreamComparison, ...]

    @property
    def matches(self) -> bool:
        return all(not c.mismatched for c in self.comparisons) and any(c.matched for c in self.comparisons)

    def as_dict(self) -> dict[str, Any]:
        return {
            "entries": self.entries,
            "events": self.events,
            "matches": self.matches,
            "streams": {
                c.stream: {"matched": c.matched, "mismatched": list(c.mismatched), "live_only": c.live_only, "replay_only": c.replay_only} for c in self.comparisons
            },
        }


def compare(stream: str, live: Sequence[Mapping[str, str]], replayed: Sequence[Mapping[str, str]]) -> StreamComparison:
    """Entries are matched by (window, end_s); a window present in both must be identical."""
    live_by_key = {(e["window"], e["end_s"]): e for e in live}
    replay_by_key = {(e["window"], e["end_s"]): e for e in replayed}
    shared = live_by_key.keys() & replay_by_key.keys()
    mismatched = tuple(sorted(key[1] for key in shared if live_by_key[key] != replay_by_key[key]))
    return StreamComparison(
        stream=stream,
        matched=len(shared) - len(mismatched),
        mismatched=mismatched,
        live_only=len(live_by_key.keys() - shared),
        replay_only=len(replay_by_key.keys() - shared),
    )


def replay(client: redis.Redis, names: Names, out_names: Names, processor: Processor, limits: Limits = Limits()) -> ReplayReport:
    """Fold the retained event log through a fresh processor, writing its outputs under `out_names`."""
    if out_names.prefix == names.prefix:
        raise ValueError("replay must write under a different prefix than the live outputs")
    clear_derived(client, out_names)
    ledger = Ledger()
    for chunk in read_log(client, names.events):
        outputs = processor.apply(prepare(chunk, ledger, limits).items)
        if outputs:
            write_outputs(client, out_names, outputs)
    comparisons = tuple(compare(short, read_derived(client, names, short), read_derived(client, out_names, short)) for short in COMPARED_STREAMS)
    return ReplayReport(entries=ledger.counters["entries_total"], events=ledger.counters["events_total"], comparisons=comparisons)
