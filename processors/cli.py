"""The `pipepulse` command. Settings come from PIPEPULSE_* variables; flags override them."""

from __future__ import annotations

import dataclasses
import signal
import sys
from types import FrameType

import click
import redis

from schemas.names import DERIVED_STREAMS

from processors.config import Config
from processors.connect import embedded, server_url
from processors.errors import ProcessorError
from processors.tail import tail


@click.group()
@click.option("--redis-url", envvar="PIPEPULSE_REDIS_URL", default=None, help="Server to use; default: the embedded one.")
@click.pass_context
def cli(ctx: click.Context, redis_url: str | None) -> None:
    """pipepulse: performance monitoring for multi-process Python pipelines."""
    try:
        config = Config.from_env()
    except ProcessorError as exc:
        raise click.UsageError(str(exc)) from exc
    ctx.obj = dataclasses.replace(config, redis_url=redis_url or config.redis_url)


@cli.command()
@click.option("--port", type=int, default=None, help="Port on 127.0.0.1 (default PIPEPULSE_SERVER_PORT or 6390).")
@click.pass_obj
def server(config: Config, port: int | None) -> None:
    """Run the embedded Redis-compatible server in the foreground until Ctrl-C or SIGTERM."""
    if port is not None:
        config = dataclasses.replace(config, server_port=port)
    with embedded(config) as running:
        click.echo(f"pipepulse server listening on {running.url}")
        click.echo(f"data (AOF everysec) in {config.state_dir / 'data'}; log in {running.log_path}")
        click.echo(f"point emitters at it with PIPEPULSE_REDIS_URL={running.url}")

        def stop(signum: int, frame: FrameType | None) -> None:
            running.request_stop()  # wait() below returns once the server has flushed and exited

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        code = running.wait()
    sys.exit(0 if code in (0, -signal.SIGTERM) else code)


@cli.command(name="tail")
@click.option("--stream", "short", type=click.Choice(["events", "dead", *DERIVED_STREAMS]), default="events", show_default=True)
@click.option("--from-start", is_flag=True, help="Start at the oldest entry instead of new ones.")
@click.option("--count", type=int, default=None, help="Stop after this many entries.")
@click.option("--block-ms", type=int, default=500, show_default=True, help="Longest wait per read.")
@click.pass_obj
def tail_command(config: Config, short: str, from_start: bool, count: int | None, block_ms: int) -> None:
    """Decode and print entries of a stream as JSON lines (one per event for the events stream)."""
    with server_url(config) as url:
        # The socket timeout stays well above the blocking read, or redis-py raises TimeoutError (redis-py #3138).
        client = redis.Redis.from_url(url, socket_timeout=block_ms / 1000 + 5)
        try:
            for line in tail(client, config.names.stream(short), from_start=from_start, count=count, block_ms=block_ms):
                click.echo(line)
        except KeyboardInterrupt:
            pass
        except redis.RedisError as exc:
            raise click.ClickException(f"reading {config.names.stream(short)} from {url}: {exc}") from exc
        finally:
            client.close()


def main() -> None:
    cli(prog_name="pipepulse")
