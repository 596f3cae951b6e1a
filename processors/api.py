"""What people look at, read from the derived snapshots in Redis: shared by `pipepulse status`, the JSON API,
the dashboard's live updates and `/metrics`. Nothing here recomputes: it only reads what the processors wrote."""

from __future__ import annotations

import json
from typing import Any, cast

import redis

from schemas.control import PRIORITIES
from schemas.names import Names

from processors.alerts_cli import worst_first
from processors.runtime import runtime_report
from processors.status import rows


def _hash(client: redis.Redis, key: str) -> dict[str, str]:
    raw = cast(dict[bytes, bytes], client.hgetall(key))
    return {k.decode(): v.decode() for k, v in raw.items()}


def overview(client: redis.Redis, names: Names) -> dict[str, Any]:
    """Health, per-component statistics, active alerts, advice in force, the optimizer's state and the processors' own figures."""
    stats = {field: json.loads(text) for field, text in _hash(client, names.latest("stats")).items()}  # decoded once, for every reader
    health = client.hget(names.latest("health"), "current")
    optimizer = client.hget(names.latest("optimizer"), "state")
    advice = [json.loads(v) for v in _hash(client, names.latest("recommendations")).values()]
    return {
        "health": json.loads(health) if health else None,
        "stats": stats,
        "components": {row["component"]: row for row in rows(stats)},
        "alerts": sorted((json.loads(v) for v in _hash(client, names.latest("alerts")).values()), key=worst_first),
        "recommendations": sorted(advice, key=lambda r: (-PRIORITIES.index(r["priority"]), r["component"], r["kind"])),
        "optimizer": json.loads(optimizer) if optimizer else None,
        "runtime": runtime_report(client, names),
    }


def recent(client: redis.Redis, names: Names, short: str, count: int) -> list[dict[str, Any]]:
    """The newest `count` entries of a derived stream, oldest first, their `json` field decoded."""
    entries = cast(list[tuple[bytes, dict[bytes, bytes]]], client.xrevrange(names.stream(short), count=count))
    return [json.loads(fields[b"json"]) for _, fields in reversed(entries) if b"json" in fields]


def latest_forecasts(client: redis.Redis, names: Names) -> dict[str, Any]:
    """The newest forecast documents per series (metric -> models, predictions with their band, thresholds)."""
    return {series: json.loads(text) for series, text in _hash(client, names.latest("forecasts")).items()}
