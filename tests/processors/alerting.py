"""Driving the monitor with per-second input series, as `promtool test rules` drives Prometheus rules."""

from __future__ import annotations

import json
from typing import Any, Callable, Sequence

from processors.contract import Output
from processors.intake import Entry
from processors.ledger import Ledger
from processors.monitor import MonitorProcessor, MonitorSettings
from processors.rules import load_rules

from tests.processors.helpers import T0, batch, items, stream_outputs, tick

# second -> {component: rows}; a component absent from the mapping sends nothing that second.
Series = Callable[[int], dict[str, list[list[Any]]]]


def entries(series: Series, seconds: int, *, start: int = 0, seqs: dict[str, int] | None = None) -> list[Entry]:
    """Each second: one batch per component (its rows stamped within the second), then a tick at its end."""
    seqs = {} if seqs is None else seqs
    out: list[Entry] = []
    for second in range(start, start + seconds):
        for component, rows in sorted(series(second).items()):
            seq = seqs.get(component, 0)
            seqs[component] = seq + 1
            out.append(batch(rows, seq=seq, producer=f"p-{component}", component=component))
        out.append(tick(T0 + second + 1))
    return out


def monitor(**settings: Any) -> MonitorProcessor:
    """The monitor with the shipped rules, unless `rules=` says otherwise."""
    return MonitorProcessor(MonitorSettings(**{"rules": load_rules(), **settings}))


def run(series: Series, seconds: int, processor: MonitorProcessor | None = None, ledger: Ledger | None = None) -> list[Output]:
    processor = processor or monitor()
    return processor.apply(items(entries(series, seconds), ledger))


def alert_events(outputs: Sequence[Output], rule: str | None = None) -> list[dict[str, Any]]:
    events = [json.loads(fields["json"]) for fields in stream_outputs(outputs, "alerts")]
    return [e for e in events if rule is None or e["rule"] == rule]


def transitions(outputs: Sequence[Output], rule: str) -> list[tuple[float, str, str]]:
    """(seconds after T0, transition, severity) of one rule, the way a rule test states its expectations."""
    return [(round(e["at_s"] - T0, 3), e["transition"], e["severity"]) for e in alert_events(outputs, rule)]


def health_snapshots(outputs: Sequence[Output]) -> list[dict[str, Any]]:
    return [json.loads(fields["json"]) for fields in stream_outputs(outputs, "health")]


def spread(second: int, count: int, row: Callable[..., list[Any]], **fields: Any) -> list[list[Any]]:
    """`count` rows evenly within one second."""
    return [row(T0 + second + (i + 0.5) / count, **fields) for i in range(count)]
