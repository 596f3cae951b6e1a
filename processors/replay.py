"""Replay: rebuild the derived streams from the event log under another prefix, and compare them with the live ones.

The event log is the source of truth and every processor is a deterministic
fold of it, so a replay of the same log must reproduce the live outputs
exactly. Windows closed before the retained log begins cannot be rebuilt; they
are reported as live-only, not as mismatches.
"""

from __future__ import annotations

import multiprocessing
from collections import deque
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Mapping, Sequence

import redis

from schemas.checks import Limits
from schemas.names import Names

from processors.contract import Processor
from processors.ledger import Ledger
from processors.intake import Decoded, Entry, admit, decode_entries
from processors.runtime import clear_derived, read_derived, read_log, tune_gc, write_outputs

# The derived streams a replay rebuilds and compares, with the fields that identify an entry in each.
COMPARED_STREAMS: dict[str, tuple[str, ...]] = {"stats": ("window", "end_s"), "stats_1m": ("window", "end_s"), "alerts": ("id",), "health": ("at_s",), "forecasts": ("end_s",), "recommendations": ("id",)}


@dataclass(frozen=True, slots=True, kw_only=True)
class StreamComparison:
    stream: str
    matched: int
    mismatched: tuple[str, ...]  # keys of entries whose contents differ
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


def decoded_chunks(chunks: Iterator[list[Entry]], limits: Limits, workers: int) -> Iterator[list[tuple[bytes, Decoded]]]:
    """Decoded chunks in log order; decoding needs nothing but the bytes, so it can run in other processes."""
    if workers <= 0:
        yield from (decode_entries(chunk, limits) for chunk in chunks)
        return
    # spawn, not fork: the caller may have threads (a forked child could inherit a held lock).
    with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"), initializer=tune_gc) as pool:
        ahead: deque[Future[list[tuple[bytes, Decoded]]]] = deque()
        for chunk in chunks:
            ahead.append(pool.submit(decode_entries, chunk, limits))
            if len(ahead) > 2 * workers:
                yield ahead.popleft().result()
        while ahead:
            yield ahead.popleft().result()


def compare(stream: str, live: Sequence[Mapping[str, str]], replayed: Sequence[Mapping[str, str]]) -> StreamComparison:
    """Entries are matched by their identifying fields; an entry present in both must be identical."""
    key_fields = COMPARED_STREAMS[stream]
    live_by_key = {tuple(e[f] for f in key_fields): e for e in live}
    replay_by_key = {tuple(e[f] for f in key_fields): e for e in replayed}
    shared = live_by_key.keys() & replay_by_key.keys()
    mismatched = tuple(sorted(key[-1] for key in shared if live_by_key[key] != replay_by_key[key]))
    return StreamComparison(
        stream=stream,
        matched=len(shared) - len(mismatched),
        mismatched=mismatched,
        live_only=len(live_by_key.keys() - shared),
        replay_only=len(replay_by_key.keys() - shared),
    )


def replay(
    client: redis.Redis, names: Names, out_names: Names, processor: Processor, limits: Limits = Limits(), decode_workers: int = 0, on_progress: Callable[[int], None] = lambda entries: None
) -> ReplayReport:
    """Fold the retained event log through a fresh processor, writing its outputs under `out_names`.

    With `decode_workers`, entries are decoded in that many other processes, a few chunks ahead of the fold;
    `on_progress` hears how many entries each chunk held.
    """
    if out_names.prefix == names.prefix:
        raise ValueError("replay must write under a different prefix than the live outputs")
    clear_derived(client, out_names)
    ledger = Ledger()
    for decoded in decoded_chunks(read_log(client, names.events), limits, decode_workers):
        outputs = processor.apply(admit(decoded, ledger).items)
        if outputs:
            write_outputs(client, out_names, outputs)
        on_progress(len(decoded))
    comparisons = tuple(compare(short, read_derived(client, names, short), read_derived(client, out_names, short)) for short in COMPARED_STREAMS)
    return ReplayReport(entries=ledger.counters["entries_total"], events=ledger.counters["events_total"], comparisons=comparisons)
