"""The breadcrumb cache: a file's calls by its content, so a file that returns to an earlier state is not parsed again."""

from __future__ import annotations

from collections import OrderedDict
from typing import Generic, Hashable, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class LruCache(Generic[K, V]):
    """At most `max_entries`, the least recently used evicted first; resizable while in use (the cache_size setting)."""

    def __init__(self, max_entries: int) -> None:
        self._entries: OrderedDict[K, V] = OrderedDict()
        self.max_entries = _positive(max_entries)
        self.hits_total = 0
        self.misses_total = 0
        self.evictions_total = 0

    def get(self, key: K) -> V | None:
        """The value, made most recent; None (a miss) if absent."""
        try:
            self._entries.move_to_end(key)
        except KeyError:
            self.misses_total += 1
            return None
        self.hits_total += 1
        return self._entries[key]

    def put(self, key: K, value: V) -> None:
        self._entries[key] = value
        self._entries.move_to_end(key)
        self._evict()

    def resize(self, max_entries: int) -> int:
        """Set a new size and evict down to it; returns how many entries left."""
        before = self.evictions_total
        self.max_entries = _positive(max_entries)
        self._evict()
        return self.evictions_total - before

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: K) -> bool:
        """Membership without touching recency or the hit counts."""
        return key in self._entries

    def _evict(self) -> None:
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)
            self.evictions_total += 1


def _positive(max_entries: int) -> int:
    if max_entries < 1:
        raise ValueError(f"max_entries must be at least 1, got {max_entries}")
    return max_entries
