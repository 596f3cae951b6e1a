"""`pipepulse optimizer`: run the optimizer worker, switch it (enable, disable: the kill switch, dry-run), see what it did.

Switching writes an OptimizerCommand to `{prefix}:optimizer_commands`, which the
optimizer reads before any advice, so a switch is part of the audit trail and
survives restarts; the command then waits a few seconds to show it applied.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any, cast

import click
import redis

from schemas.control import MODES, Action, OptimizerCommand, decode, encode
from schemas.names import Names

from processors.alerts_cli import await_condition, clock_text, reading, who
from processors.config import Config
from processors.connect import server_url
from processors.contract import to_json
from processors.control_policy import OptimizerSettings
from processors.optimizer import STREAMS, Optimizer
from processors.runtime import Source, Worker, ensure_group, record_source
from processors.service import serve, stop_on_signals


def optimizer_source(names: Names) -> Source:
    return record_source(names, STREAMS)


def ensure_optimizer_groups(url: str, names: Names) -> None:
    """Create the optimizer's consumer groups at the streams' ends, so that it misses no advice written after this."""
    with redis.Redis.from_url(url, socket_timeout=5) as client:
        for stream in optimizer_source(names).streams:
            ensure_group(client, stream, names.group(Optimizer.name), start_id="$")


@click.group(invoke_without_command=True)
@click.option("--mode", type=click.Choice(MODES), default=None, help="Switch to this mode at start (default PIPEPULSE_OPTIMIZER_MODE; else as it was, enabled when new).")
@click.pass_context
def optimizer(ctx: click.Context, mode: str | None) -> None:
    """Run the optimizer worker until Ctrl-C or SIGTERM; or switch it with a subcommand (a second one waits as a hot standby)."""
    if ctx.invoked_subcommand is not None:
        return
    config: Config = ctx.obj
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    stop = stop_on_signals()
    with server_url(config) as server:
        url = config.optimizer_redis_url or server
        names = config.names
        ensure_optimizer_groups(url, names)
        if mode or config.optimizer_mode:
            send_switch(url, names, mode or config.optimizer_mode or "enabled", who(None), "set at start")
        worker = Worker(url=url, names=names, processor=Optimizer(OptimizerSettings()), settings=config.runtime_settings, source=optimizer_source(names))
        click.echo(f"pipepulse optimizer reading {names.stream('recommendations')}, writing {names.control('<component>')}; decisions on {names.stream('actions')}")
        serve(stop, [worker])


def send_switch(url: str, names: Names, mode: str, by: str, reason: str) -> None:
    with reading(url) as client:
        switch(client, names, mode, by, reason)


def switch(client: redis.Redis, names: Names, mode: str, by: str, reason: str) -> None:
    """Append an OptimizerCommand: the optimizer reads it before any advice in the same read."""
    command = OptimizerCommand(mode=mode, by=by, reason=reason, at_s=time.time())
    client.xadd(names.stream("optimizer_commands"), {"json": encode(command)}, maxlen=names.maxlen("optimizer_commands"), approximate=True)


def _state(client: redis.Redis, names: Names) -> dict[str, Any]:
    raw = client.hget(names.latest("optimizer"), "state")
    return cast(dict[str, Any], json.loads(raw)) if raw else {}


def _switch_command(name: str, mode: str, help_text: str) -> None:
    @optimizer.command(name=name, help=help_text)
    @click.option("--reason", default="", help="Why (kept in the audit trail).")
    @click.option("--by", default=None, help="Who (default: $USER).")
    @click.pass_obj
    def command(config: Config, reason: str, by: str | None) -> None:
        with server_url(config) as url:
            send_switch(url, config.names, mode, who(by), reason)
            applied = await_condition(url, lambda client: _state(client, config.names).get("mode") == mode)
        click.echo(f"optimizer {mode}: {'applied' if applied else 'sent (not applied yet: is the optimizer running?)'}")


_switch_command("disable", "disabled", "The kill switch: no control setting is written until `enable` (decisions are still recorded).")
_switch_command("enable", "enabled", "Apply recommendations again.")
_switch_command("dry-run", "dry_run", "Decide as usual and record what would be done, but write no control setting.")


@optimizer.command()
@click.option("--recent", type=int, default=10, show_default=True, help="Show this many recent decisions.")
@click.option("--json", "as_json", is_flag=True, help="Print the state and recent decisions as JSON.")
@click.pass_obj
def status(config: Config, recent: int, as_json: bool) -> None:
    """The mode, the settings in force, and the latest decisions (applied, skipped with why, rolled back)."""
    with server_url(config) as url, reading(url) as client:
        state = _state(client, config.names)
        entries = cast(list[tuple[str, dict[str, str]]], client.xrevrange(config.names.stream("actions"), count=recent) if recent > 0 else [])
    decisions = [decode(Action, fields["json"]) for _, fields in entries]
    if as_json:
        click.echo(to_json({"state": state, "recent": [json.loads(fields["json"]) for _, fields in entries]}))
        return
    click.echo(f"mode: {state.get('mode', 'unknown (no decision yet)')}")
    for key, body in state.get("settings", {}).items():
        click.echo(f"  {key} = {body['value']} (version {body['version']}, until {clock_text(body['expires_at_s'])}{', verifying' if body['verifying'] else ''})")
    for action in decisions:
        change = f" {action.old_value} -> {action.new_value}" if action.new_value is not None else ""
        click.echo(f"{clock_text(action.at_s)}  {action.decision:<11} {action.component}/{action.setting}{change}: {action.reason}")
