"""Reading the derived streams' entries for the period report: parse each stream's records by event time,
refuse NaN and Infinity, count what cannot be read, and pick the statistics windows of a period."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any, Callable, Final, Mapping, NoReturn, Sequence, TypeVar, cast

from schemas.alerts import AlertEvent
from schemas.control import Action, Recommendation, decode
from schemas.errors import SchemaError

T = TypeVar("T")
Stats = Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Window:
    """One statistics window: the pipeline's stats and each present component's."""

    end_s: float
    window_s: float
    pipeline: Stats
    components: Mapping[str, Stats]


def read_records(entries: Sequence[Mapping[str, str]], parse: Callable[[Mapping[str, str]], tuple[float, Any]]) -> tuple[list[tuple[float, Any]], int]:
    """(event time, record) of every readable entry, in stream order, and how many were unreadable."""
    records: list[tuple[float, Any]] = []
    unreadable = 0
    for fields in entries:
        try:
            at_s, record = parse(fields)
        except (KeyError, TypeError, ValueError, AttributeError, SchemaError):  # a JSONDecodeError is a ValueError
            unreadable += 1
            continue
        if math.isfinite(at_s):
            records.append((at_s, record))
        else:
            unreadable += 1
    return records, unreadable


def json_object(text: str, strict: bool = False) -> dict[str, Any]:
    """A JSON object without NaN or Infinity (Python's json reads them; the report must never carry one).

    `strict` also refuses numbers that overflow (1e999), for records copied into the report as they are;
    it costs a call per number, so statistics are read without it and checked number by number.
    """
    body = json.loads(text, parse_constant=_not_finite, parse_float=_finite if strict else float)
    if not isinstance(body, dict):
        raise ValueError("not a JSON object")
    return body


def _not_finite(text: str) -> NoReturn:
    raise ValueError(f"{text} in an entry")


def _finite(text: str) -> float:
    value = float(text)
    return value if math.isfinite(value) else _not_finite(text)


def _window(end_s: float, body: Mapping[str, Any]) -> tuple[float, Window]:
    components = {name: part["stats"] for name, part in body["components"].items() if "stats" in part}
    if not isinstance(body["pipeline"], dict) or not all(isinstance(stats, dict) for stats in components.values()):
        raise ValueError("statistics that are not objects")
    window_s = number(body["window_s"])
    if window_s is None or window_s <= 0:
        raise ValueError(f"a window of {body['window_s']} s")
    return end_s, Window(end_s=end_s, window_s=window_s, pipeline=body["pipeline"], components=components)


def _alert(fields: Mapping[str, str]) -> tuple[float, AlertEvent]:
    json_object(fields["json"], strict=True)  # the schema's own reading would let a NaN or an infinity through
    event = AlertEvent.from_fields(cast(Mapping[bytes | str, bytes | str], fields))
    return event.at_s, event


def _recommendation(fields: Mapping[str, str]) -> tuple[float, Recommendation]:
    json_object(fields["json"], strict=True)
    return (record := decode(Recommendation, fields["json"])).issued_at_s, record


def _action(fields: Mapping[str, str]) -> tuple[float, Action]:
    json_object(fields["json"], strict=True)
    return (record := decode(Action, fields["json"])).at_s, record


PARSERS: Final[dict[str, Callable[[Mapping[str, str]], tuple[float, Any]]]] = {
    "stats": lambda fields: _window(float(fields["end_s"]), json_object(fields["json"])),
    "stats_1m": lambda fields: _window(float(fields["end_s"]), json_object(fields["json"])["1m"]),
    "alerts": _alert,
    "health": lambda fields: (float(fields["at_s"]), json_object(fields["json"])),
    "forecasts": lambda fields: (float(fields["end_s"]), json_object(fields["json"], strict=True)),
    "recommendations": _recommendation,
    "actions": _action,
}


def during(records: Sequence[tuple[float, T]], start_s: float, until_s: float) -> list[tuple[float, T]]:
    """The records at instants in [start_s, until_s], by event time (stream order within an instant)."""
    return sorted((r for r in records if start_s <= r[0] <= until_s), key=lambda r: r[0])


def in_period(short: str, records: Sequence[tuple[float, Any]], start_s: float, until_s: float) -> int:
    if short in ("stats", "stats_1m"):
        return len([at_s for at_s, _ in records if start_s < at_s <= until_s])
    return len([at_s for at_s, _ in records if start_s <= at_s <= until_s])


def windows_between(tens: Sequence[tuple[float, Window]], minutes: Sequence[tuple[float, Window]], start_s: float, until_s: float) -> list[Window]:
    """Windows ending in (start_s, until_s]: the 10 s ones, and 1 m roll-ups before the oldest 10 s one (the 10 s stream is kept 6 h)."""
    chosen = {end_s: w for end_s, w in tens if start_s < end_s <= until_s}
    first_s = min((w.end_s - w.window_s for w in chosen.values()), default=math.inf)
    chosen.update({end_s: w for end_s, w in minutes if start_s < end_s <= min(until_s, first_s)})
    return [chosen[end_s] for end_s in sorted(chosen)]


def number(value: object) -> float | None:
    """A finite number, or None for anything else (null, text, NaN): a report never carries a non-finite value."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def as_int(value: object) -> int:
    return int(number(value) or 0)


def as_object(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, dict) else {}


