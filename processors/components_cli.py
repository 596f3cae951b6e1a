"""`pipepulse components`: the component registry as a table (or JSON): who runs where, since when, depending on what."""

from __future__ import annotations

import time
from typing import Any, Mapping

import click

from schemas import views

from processors.alerts_cli import reading
from processors.config import Config
from processors.connect import server_url
from processors.contract import to_json
from processors.status import aligned

COLUMNS = ("component", "status", "processes", "hosts", "registered", "last seen", "depends on", "dependents")


def _utc(time_s: float | None) -> str:
    return "-" if time_s is None else time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(time_s))


def table(registry: Mapping[str, Mapping[str, Any]]) -> str:
    lines = [COLUMNS]
    for name, entry in sorted(registry.items()):
        live = [p for p in entry["processes"] if not p["stale"] and not p.get("stopped")]
        lines.append(
            (
                name,
                entry["status"],
                f"{len(live)} of {len(entry['processes'])}",
                ",".join(entry["hosts"]) or "-",
                _utc(entry["registered_at_s"]),
                _utc(entry["last_seen_s"]),
                ",".join(entry["depends_on"]) or "-",
                ",".join(entry["dependents"]) or "-",
            )
        )
    return aligned(lines)


@click.command()
@click.option("--json", "as_json", is_flag=True, help="The registry entries as JSON (one object per component).")
@click.pass_obj
def components(config: Config, as_json: bool) -> None:
    """The component registry: status (active, stale, stopped), live processes, hosts, times (UTC) and dependencies."""
    with server_url(config) as url, reading(url) as client:
        registry = views.registry(client, config.names)
    if as_json:
        click.echo(to_json(registry))
    elif not registry:
        click.echo("no component known yet: is `pipepulse run` running, and has anything emitted?")
    else:
        click.echo(table(registry))
