"""The dependency graph: which failing component is the root cause of the trouble of those downstream of it.

Components declare what they depend on (`depends_on`). When a component is
critical or unknown (stale), everything that depends on it, directly or
through others, is *impacted*, and its cause is the failing component furthest
upstream: with A -> B -> C (C depends on B, B on A), a fault in A makes B and
C impacted by A, even when B has turned critical too. A dependency on a
component never seen is not a cause: nothing is known of it.
"""

from __future__ import annotations

from typing import Any, Final, Mapping, Sequence

FAILING: Final = frozenset({"critical", "unknown"})


def _failing_upstream(name: str, statuses: Mapping[str, str], depends_on: Mapping[str, Sequence[str]]) -> dict[str, list[str]]:
    """Every failing component upstream of `name`, with the shortest path to it (breadth first, cycles cut)."""
    paths: dict[str, list[str]] = {name: []}
    frontier = [name]
    found: dict[str, list[str]] = {}
    while frontier:
        following: list[str] = []
        for current in frontier:
            for upstream in sorted(depends_on.get(current, ())):
                if upstream in paths or upstream not in statuses:
                    continue
                paths[upstream] = [*paths[current], upstream]
                following.append(upstream)
                if statuses[upstream] in FAILING:
                    found[upstream] = paths[upstream]
        frontier = following
    return found


def impact(statuses: Mapping[str, str], depends_on: Mapping[str, Sequence[str]]) -> dict[str, list[dict[str, Any]]]:
    """For each impacted component, its root causes: `{"component", "status", "path"}`, path from it to the cause.

    A root cause is a failing upstream component with no failing component upstream of its own; where every
    failing one has (a cycle), the nearest failing ones are named instead.
    """
    upstream = {name: _failing_upstream(name, statuses, depends_on) for name in sorted(statuses)}
    result: dict[str, list[dict[str, Any]]] = {}
    for name, failing in upstream.items():
        if not failing:
            continue
        roots = [u for u in failing if not upstream[u]] or [u for u in failing if len(failing[u]) == min(map(len, failing.values()))]
        result[name] = [{"component": root, "status": statuses[root], "path": failing[root]} for root in sorted(roots)]
    return result


def cause_text(causes: Sequence[Mapping[str, Any]]) -> str:
    """How an alert names its upstream cause: "upstream parser is critical"."""
    return ", ".join(f"upstream {cause['component']} is {'stale' if cause['status'] == 'unknown' else cause['status']}" for cause in causes)
