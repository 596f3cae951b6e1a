"""Column checks for the codec: each finds the rows whose value breaks the contract.

A check takes one column (the same field of every row of one event type) and
returns `(row_index, reason, detail)` for each bad row. The common case, a
column of valid numbers, is checked with set() and numpy in C rather than a
Python loop per value.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Final, Sequence

import numpy as np

Problem = tuple[int, str, str]
Check = Callable[[Sequence[object], "Limits"], list[Problem]]

# 2000-01-01 .. 2100-01-01: anything outside is a broken clock or a unit mistake (ms for s).
MIN_TIMESTAMP_S: Final = 946_684_800.0
MAX_TIMESTAMP_S: Final = 4_102_444_800.0

_NUMBER_TYPES: Final = frozenset({int, float})


@dataclass(frozen=True, slots=True, kw_only=True)
class Limits:
    """Size caps applied before and during decoding; every one is a defence against hostile input."""

    max_entry_bytes: int = 1 << 20
    max_events: int = 20_000
    max_name_chars: int = 200
    max_text_chars: int = 1_000
    max_map_items: int = 64


def _numbers(col: Sequence[object], *, integral: bool) -> list[Problem]:
    """Rows whose value is not a number (bool is not a number here), or not finite."""
    problems: list[Problem] = []
    allowed = {int} if integral else _NUMBER_TYPES
    if not set(map(type, col)) <= allowed:
        for i, value in enumerate(col):
            if type(value) not in allowed:
                want = "an integer" if integral else "a number"
                problems.append((i, "wrong_type", f"expected {want}, got {type(value).__name__}"))
    if not integral:
        bad = {i for i, _, _ in problems}
        for i, value in enumerate(col):
            if i not in bad and not math.isfinite(value):  # type: ignore[arg-type]
                problems.append((i, "not_finite", f"value {value!r} is not finite"))
    return problems


def _fast_numbers(col: Sequence[object], *, integral: bool) -> tuple[list[Problem], np.ndarray | None]:
    """Like _numbers, but returns the column as a float array when every value is valid."""
    kinds = set(map(type, col))
    if kinds <= ({int} if integral else _NUMBER_TYPES):
        try:
            values = np.asarray(col, dtype=np.float64)
        except OverflowError:  # an int beyond float range: let the slow path name the row
            return _numbers(col, integral=integral) or [(0, "not_finite", "integer out of range")], None
        if integral or bool(np.isfinite(values).all()):
            return [], values
    return _numbers(col, integral=integral), None


def _below(col: Sequence[object], values: np.ndarray | None, skip: set[int], low: float) -> np.ndarray:
    """Indices of rows whose value is below `low` (values known to be valid numbers)."""
    if values is not None:
        return np.flatnonzero(values < low)
    return np.array([i for i, v in enumerate(col) if i not in skip and v < low], dtype=np.int64)  # type: ignore[operator]


def finite(col: Sequence[object], limits: Limits) -> list[Problem]:
    problems, _ = _fast_numbers(col, integral=False)
    return problems


def non_negative(col: Sequence[object], limits: Limits, *, integral: bool = False, reason: str = "negative_value") -> list[Problem]:
    problems, values = _fast_numbers(col, integral=integral)
    skip = {i for i, _, _ in problems}
    for i in _below(col, values, skip, 0.0):
        problems.append((int(i), reason, f"value {col[int(i)]!r} is negative"))
    return problems


def count(col: Sequence[object], limits: Limits) -> list[Problem]:
    return non_negative(col, limits, integral=True)


def optional_count(col: Sequence[object], limits: Limits) -> list[Problem]:
    """A count, or None for "not measured"."""
    present = [i for i, v in enumerate(col) if v is not None]
    if not present:
        return []
    return [(present[i], reason, detail) for i, reason, detail in count([col[i] for i in present], limits)]


def duration(col: Sequence[object], limits: Limits) -> list[Problem]:
    return non_negative(col, limits, reason="negative_duration")


def timestamp(col: Sequence[object], limits: Limits) -> list[Problem]:
    problems, values = _fast_numbers(col, integral=False)
    skip = {i for i, _, _ in problems}
    if values is not None:
        out_of_range = np.flatnonzero((values < MIN_TIMESTAMP_S) | (values >= MAX_TIMESTAMP_S))
    else:
        out_of_range = np.array(
            [i for i, v in enumerate(col) if i not in skip and not MIN_TIMESTAMP_S <= v < MAX_TIMESTAMP_S],  # type: ignore[operator]
            dtype=np.int64,
        )
    for i in out_of_range:
        problems.append((int(i), "timestamp_out_of_range", f"timestamp_s {col[int(i)]!r} is outside 2000..2100"))
    return problems


def boolean(col: Sequence[object], limits: Limits) -> list[Problem]:
    if set(map(type, col)) <= {bool}:
        return []
    return [(i, "wrong_type", f"expected a bool, got {type(v).__name__}") for i, v in enumerate(col) if type(v) is not bool]


def _text(value: object, max_chars: int, *, optional: bool) -> tuple[str, str] | None:
    if value is None and optional:
        return None
    if type(value) is not str:
        return "wrong_type", f"expected a string, got {type(value).__name__}"
    if len(value) > max_chars:
        return "oversized_string", f"string of {len(value)} chars exceeds {max_chars}"
    return None


def _text_column(col: Sequence[object], max_chars: int, *, optional: bool) -> list[Problem]:
    kinds = set(map(type, col))
    if kinds <= {str} and max(map(len, col), default=0) <= max_chars:  # type: ignore[arg-type]
        return []  # the common case, at C speed
    if optional and kinds <= {str, type(None)} and max(map(len, filter(None, col)), default=0) <= max_chars:  # type: ignore[arg-type]
        return []
    problems = []
    for i, value in enumerate(col):
        problem = _text(value, max_chars, optional=optional)
        if problem is not None:
            problems.append((i, *problem))
    return problems


def name(col: Sequence[object], limits: Limits) -> list[Problem]:
    return _text_column(col, limits.max_name_chars, optional=False)


def optional_text(col: Sequence[object], limits: Limits) -> list[Problem]:
    return _text_column(col, limits.max_text_chars, optional=True)


def text(col: Sequence[object], limits: Limits) -> list[Problem]:
    return _text_column(col, limits.max_text_chars, optional=False)


def optional_names(col: Sequence[object], limits: Limits) -> list[Problem]:
    """None, or an array of up to `max_map_items` names (a component's declared dependencies)."""
    problems: list[Problem] = []
    for i, value in enumerate(col):
        if value is None:
            continue
        if type(value) is not list:
            problems.append((i, "wrong_type", f"expected an array of names, got {type(value).__name__}"))
        elif len(value) > limits.max_map_items:
            problems.append((i, "too_many_items", f"array of {len(value)} names exceeds {limits.max_map_items}"))
        elif (problem := next(filter(None, (_text(item, limits.max_name_chars, optional=False) for item in value)), None)) is not None:
            problems.append((i, *problem))
    return problems


def one_of(*allowed: str) -> Check:
    """A check for an enumerated string field."""

    def check(col: Sequence[object], limits: Limits) -> list[Problem]:
        return [(i, "wrong_type", f"expected one of {sorted(allowed)}, got {v!r}"[:200]) for i, v in enumerate(col) if v not in allowed or type(v) is not str]

    return check


def _mapping(value: object, limits: Limits, value_ok: Callable[[object], tuple[str, str] | None]) -> tuple[str, str] | None:
    if type(value) is not dict:
        return "wrong_type", f"expected a map, got {type(value).__name__}"
    if len(value) > limits.max_map_items:
        return "too_many_items", f"map of {len(value)} items exceeds {limits.max_map_items}"
    for key, item in value.items():
        problem = _text(key, limits.max_name_chars, optional=False) or value_ok(item)
        if problem is not None:
            return problem
    return None


def _finite_number(value: object) -> tuple[str, str] | None:
    if type(value) not in _NUMBER_TYPES:
        return "wrong_type", f"expected a number, got {type(value).__name__}"
    if not math.isfinite(value):  # type: ignore[arg-type]
        return "not_finite", f"value {value!r} is not finite"
    return None


def counters(col: Sequence[object], limits: Limits) -> list[Problem]:
    """Maps of domain counter name to a finite number."""
    if set(map(type, col)) == {type(None)}:
        return []  # the common case: no counters on any event, checked at C speed
    problems = []
    for i, value in enumerate(col):
        if value:
            problem = _mapping(value, limits, _finite_number)
            if problem is not None:
                problems.append((i, *problem))
        elif value is not None and type(value) is not dict:
            problems.append((i, "wrong_type", f"expected a map, got {type(value).__name__}"))
    return problems


def config(col: Sequence[object], limits: Limits) -> list[Problem]:
    """Maps of setting name to a scalar (a component's configuration)."""

    def scalar(item: object) -> tuple[str, str] | None:
        if item is None or type(item) is bool:
            return None
        if type(item) is str:
            return _text(item, limits.max_text_chars, optional=False)
        return _finite_number(item)

    return [(i, *p) for i, v in enumerate(col) if (p := _mapping(v, limits, scalar)) is not None]
