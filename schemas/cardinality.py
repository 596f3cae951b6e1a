"""A cap on distinct names, so that a bug that puts an id into a name cannot blow up every series store downstream."""

from __future__ import annotations

import threading
from typing import AbstractSet, Final

OVERFLOW_NAME: Final = "__overflow__"


class CardinalityGuard:
    """Admits the first `max_names` distinct names; later new names map to OVERFLOW_NAME and are counted.

    >>> guard = CardinalityGuard(max_names=1)
    >>> guard.admit("parse"), guard.admit("user-4711"), guard.overflow_total
    ('parse', '__overflow__', 1)
    """

    def __init__(self, *, max_names: int) -> None:
        if max_names < 1:
            raise ValueError(f"max_names must be at least 1, got {max_names}")
        self.max_names = max_names
        self.overflow_total = 0
        self._names: set[str] = set()
        self._lock = threading.Lock()

    @property
    def known(self) -> AbstractSet[str]:
        """The admitted names (a live read-only view): callers may test membership before calling admit()."""
        return self._names

    def admit(self, name: str) -> str:
        if name in self._names:  # the hot case: a known name, no lock
            return name
        with self._lock:
            if name in self._names:
                return name
            if len(self._names) < self.max_names:
                self._names.add(name)
                return name
            self.overflow_total += 1
            return OVERFLOW_NAME

    @property
    def distinct(self) -> int:
        return len(self._names)
