"""The component registry: who is out there, derived from lifecycle events and activity.

Each entry says when a component was first seen (its registration), when it
was last seen, its processes and hosts, its configuration, the components it
declared it depends on (and those that depend on it), and its status:
`active`, `stale` (silent for longer than `stale_after_s`) or `stopped`. The
statistics processor owns the facts (they are in its checkpoint); this module
only renders them into the `components` latest table, one field per component.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

from processors.contract import LatestOutput, Output, to_json


def is_stale(last_seen_s: float, now_s: float, stale_after_s: float) -> bool:
    """Silent for longer than `stale_after_s` of event time (never seen counts as silent)."""
    return now_s - last_seen_s > stale_after_s


def status(info: Mapping[str, Any], now_s: float, stale_after_s: float) -> str:
    if info["state"] == "stopped":
        return "stopped"
    return "stale" if is_stale(info["last_seen_s"], now_s, stale_after_s) else "active"


def publish(components: Mapping[str, Mapping[str, Any]], producers: Mapping[str, Mapping[str, Any]], now_s: float, stale_after_s: float) -> list[Output]:
    """Every entry, at every tick, as the live statistics are: idempotent writes whose outputs a restore reproduces."""
    return [LatestOutput("components", name, to_json(entry)) for name, entry in entries(components, producers, now_s, stale_after_s).items()]


def entries(components: Mapping[str, Mapping[str, Any]], producers: Mapping[str, Mapping[str, Any]], now_s: float, stale_after_s: float) -> dict[str, dict[str, Any]]:
    """One registry entry per known component, from the statistics processor's component and producer facts."""
    processes: dict[str, list[dict[str, Any]]] = {}
    for producer_id, producer in sorted(producers.items()):
        seen_s = producer["last_seen_s"]
        processes.setdefault(producer["component"], []).append(
            {
                "producer_id": producer_id,
                "pid": producer["pid"],
                "host": producer["host"],
                "last_seen_s": seen_s if math.isfinite(seen_s) else None,
                "stale": is_stale(seen_s, now_s, stale_after_s),
                "stopped": bool(producer.get("stopped")),
            }
        )
    dependents: dict[str, list[str]] = {}
    for name in sorted(components):
        for upstream in components[name].get("depends_on", []):
            dependents.setdefault(upstream, []).append(name)
    result: dict[str, dict[str, Any]] = {}
    for name, info in sorted(components.items()):
        own = processes.get(name, [])
        first_s, last_s = info.get("first_seen_s"), info["last_seen_s"]
        result[name] = {
            "component": name,
            "status": status(info, now_s, stale_after_s),
            "registered_at_s": first_s,
            "last_seen_s": last_s if math.isfinite(last_s) else None,
            "processes": own,
            "hosts": sorted({p["host"] for p in own}),
            "config": info["config"],
            "depends_on": info.get("depends_on", []),
            "dependents": dependents.get(name, []),
        }
    return result
