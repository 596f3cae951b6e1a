"""`pipepulse worker`: one worker of the Faust engine (the `kafka` extra)."""

from __future__ import annotations

import logging
import os
import socket
from pathlib import Path

import click

from processors.config import Config
from processors.connect import server_url
from processors.monitor import MonitorProcessor
from processors.rules import RuleError
from processors.runtime import tune_gc


@click.command()
@click.option("--id", "instance_id", default=None, help="A stable name for this worker (static group membership): restarted under it, the worker takes its partitions back at once.")
@click.option("--ticks/--no-ticks", default=True, show_default=True, help="Send the engine's time ticks while this worker leads the group (--no-ticks: the log carries its own).")
@click.option("--loglevel", type=click.Choice(["debug", "info", "warning", "error"]), default="info", show_default=True)
@click.pass_obj
def worker(config: Config, instance_id: str | None, ticks: bool, loglevel: str) -> None:
    """Run a worker of the Faust engine on PIPEPULSE_KAFKA_URL, writing snapshots to the Redis URL; run several to share the work."""
    if config.kafka_url is None:
        raise click.UsageError("pipepulse worker needs PIPEPULSE_KAFKA_URL=kafka://host:port")
    try:
        settings = config.monitor_settings()  # the rules are checked before anything starts
    except RuleError as exc:
        raise click.UsageError(str(exc)) from exc
    try:
        from processors.scaleout.app import EngineSettings, run_worker
    except ImportError as exc:
        raise click.ClickException(f"the Faust engine needs its extra: pip install 'pipepulse[kafka]' ({exc})") from exc
    logging.basicConfig(level=loglevel.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    tune_gc()  # a processing process, as `pipepulse run`
    name = instance_id or f"{socket.gethostname()}-{os.getpid()}"
    with server_url(config) as url:
        engine = EngineSettings(
            kafka_url=config.kafka_url,
            redis_url=url,
            names=config.names,
            processor_factory=lambda: MonitorProcessor(settings),
            data_dir=_made(config.state_dir / "faust" / name),
            partitions=config.kafka_partitions,
            tick_interval_s=config.tick_interval_s if ticks else None,
            instance_id=instance_id,
        )
        click.echo(f"pipepulse worker {name}: {config.kafka_url} -> {url} (prefix {config.prefix})")
        run_worker(engine, loglevel)


def _made(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    return directory
