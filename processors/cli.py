"""The `pipepulse` command. Settings come from PIPEPULSE_* variables; flags override them."""

from __future__ import annotations

import dataclasses
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType

import click
import redis

from schemas.control import DEMO_FAULTS, MODES
from schemas.names import DERIVED_STREAMS, Names

from processors import alerts_cli, api, web
from processors.alerts_cli import duration_s, reading
from processors.config import ENGINES, Config
from processors.connect import embedded, server_url
from processors.contract import Processor, to_json
from processors.errors import ProcessorError
from processors.replay import replay as replay_log
from processors.optimizer_cli import ensure_optimizer_groups, optimizer
from processors.report_cli import report
from processors.components_cli import components
from processors.runtime import Ticker, Worker, ensure_group, tune_gc
from processors.service import Child, serve, spawn, stop_on_signals
from processors.monitor import MonitorProcessor
from processors.rules import RuleError
from processors.status import health_summary
from processors.status import table as status_table
from processors.tail import tail
from processors.worker_cli import worker


FORWARDER_GROUP = "alert-forward"


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


@cli.command()
@click.option("--demo", is_flag=True, help="Also run the demo call-detection pipeline over the standard library (python -m emitters.demo).")
@click.option("--rules", "rules_file", type=click.Path(dir_okay=False, path_type=Path), default=None, help="Alert rules (TOML) over the shipped defaults; default PIPEPULSE_RULES_FILE.")
@click.option("--alert-webhook", default=None, help="Post alerts to this URL as Alertmanager webhooks; default PIPEPULSE_ALERT_WEBHOOK_URL.")
@click.option("--log-alerts/--no-log-alerts", default=True, show_default=True, help="Log every alert event, one line each, in this output.")
@click.option("--optimizer/--no-optimizer", "with_optimizer", default=True, show_default=True, help="Also run the optimizer (pipepulse optimizer) as its own process.")
@click.option("--optimizer-mode", type=click.Choice(MODES), default=None, help="Switch the optimizer to this mode at start (default PIPEPULSE_OPTIMIZER_MODE).")
@click.option("--web/--no-web", "with_web", default=True, show_default=True, help="Also serve the API and /metrics (pipepulse web) on 127.0.0.1.")
@click.option("--engine", type=click.Choice(ENGINES), default=None, help="faust: the monitor runs in Faust workers on PIPEPULSE_KAFKA_URL (the kafka extra); snapshots still go to Redis. Default PIPEPULSE_ENGINE or redis.")
@click.option("--workers", type=click.IntRange(0, 64), default=2, show_default=True, help="With --engine faust: `pipepulse worker` processes to start here (0: they run elsewhere).")
@click.pass_obj
def run(
    config: Config, demo: bool, rules_file: Path | None, alert_webhook: str | None, log_alerts: bool, with_optimizer: bool, optimizer_mode: str | None, with_web: bool, engine: str | None, workers: int
) -> None:
    """Run every processor, the ticker and the optimizer until Ctrl-C or SIGTERM; a second `run` waits as a hot standby
    (under --engine faust, the workers are the standbys: start them elsewhere, and a second run with --workers 0)."""
    config = dataclasses.replace(
        config, rules_file=rules_file or config.rules_file, alert_webhook_url=alert_webhook or config.alert_webhook_url, optimizer_mode=optimizer_mode or config.optimizer_mode
    )
    config = dataclasses.replace(config, engine=engine or config.engine)
    if config.engine == "faust" and config.kafka_url is None:
        raise click.UsageError("--engine faust needs PIPEPULSE_KAFKA_URL=kafka://host:port")
    serve_all(config, log_alerts=log_alerts, with_optimizer=with_optimizer, with_web=with_web, pipeline=["--churn-per-s", "20"] if demo else None, faust_workers=workers)


@cli.command()
@click.option("--source", type=click.Path(file_okay=False, exists=True, path_type=Path), default=None, help="Python source tree to watch (default: the standard library).")
@click.option("--concurrency", type=click.IntRange(1, 64), default=2, show_default=True, help="Extractor processes to start with (the optimizer may change it).")
@click.option("--cache-size", type=click.IntRange(16), default=256, show_default=True, help="Breadcrumb cache entries to start with.")
@click.option("--churn-per-s", type=click.FloatRange(0), default=20.0, show_default=True, help="Files edited per second in the pipeline's working copy.")
@click.option("--fault", "faults", type=click.Choice(DEMO_FAULTS), multiple=True, help="Inject a fault from the start (repeatable); later: pipepulse fault KIND.")
@click.option("--fault-for", default="2m", show_default=True, help="How long a --fault lasts.")
@click.option("--optimizer-mode", type=click.Choice(MODES), default=None, help="Switch the optimizer to this mode at start.")
@click.pass_obj
def demo(config: Config, source: Path | None, concurrency: int, cache_size: int, churn_per_s: float, faults: tuple[str, ...], fault_for: str, optimizer_mode: str | None) -> None:
    """Everything on the embedded default: server, monitor, optimizer, alert log, and a real call-detection pipeline to watch."""
    arguments = ["--concurrency", str(concurrency), "--cache-size", str(cache_size), "--churn-per-s", str(churn_per_s)]
    if source is not None:
        arguments += ["--source", str(source)]
    config = dataclasses.replace(config, optimizer_mode=optimizer_mode or config.optimizer_mode, engine="redis")  # the demo runs on the embedded default
    if faults:
        until_s = time.time() + duration_s(fault_for)
        with server_url(config) as url, reading(url) as client:
            client.hset(config.names.demo_faults, mapping=dict.fromkeys(faults, until_s))
    click.echo("in another terminal: pipepulse status | pipepulse alerts list | pipepulse optimizer status | pipepulse fault throttle --for 2m")
    serve_all(config, log_alerts=True, with_optimizer=True, with_web=True, pipeline=arguments)


@cli.command()
@click.argument("kind", type=click.Choice([*DEMO_FAULTS, "clear"]))
@click.option("--for", "for_", default="2m", show_default=True, help="How long the fault lasts (90s, 15m, 2h).")
@click.pass_obj
def fault(config: Config, kind: str, for_: str) -> None:
    """Inject a fault into the running demo pipeline (or clear them all) to watch alerts, health and the optimizer react."""
    until_s = time.time() + duration_s(for_)
    with server_url(config) as url, reading(url) as client:
        if kind == "clear":
            client.delete(config.names.demo_faults)
            click.echo("faults cleared")
            return
        client.hset(config.names.demo_faults, kind, until_s)
    click.echo(f"fault {kind} injected for {for_}; watch: pipepulse status, pipepulse optimizer status")


@cli.command(name="web")
@click.option("--host", default=None, help="Address to bind (default PIPEPULSE_WEB_HOST or 127.0.0.1: keep it on loopback unless behind a proxy or in a container).")
@click.option("--port", type=int, default=None, help="Port (default PIPEPULSE_WEB_PORT or 8765).")
@click.option("--allow-host", multiple=True, help="A further Host header to accept, host:port (repeatable).")
@click.pass_obj
def web_command(config: Config, host: str | None, port: int | None, allow_host: tuple[str, ...]) -> None:
    """Serve the JSON API, /metrics and live updates until Ctrl-C or SIGTERM (changes need the token)."""
    token, token_path = web.token_for(config.state_dir, config.web_token)
    settings = web.WebSettings(host=host or config.web_host, port=port or config.web_port, token=token, extra_hosts=allow_host, kafka_url=config.command_kafka_url)
    with server_url(config) as url:
        client = redis.Redis.from_url(url, socket_timeout=5)
        click.echo(f"pipepulse web on http://127.0.0.1:{settings.port}/ (API under /api, Prometheus at /metrics)")
        click.echo(f"changes need the {web.TOKEN_HEADER} header: " + (f"the token in {token_path}" if token_path else "PIPEPULSE_WEB_TOKEN"))
        try:
            web.serve(client, config.names, settings)
        except OSError as exc:
            raise click.ClickException(f"cannot serve on {settings.host}:{settings.port} ({exc.strerror}): choose another port with --port or PIPEPULSE_WEB_PORT") from exc
        finally:
            client.close()


def serve_all(config: Config, *, log_alerts: bool, with_optimizer: bool, with_web: bool, pipeline: list[str] | None, faust_workers: int = 0) -> None:
    """The processors and ticker in threads (under the faust engine: `faust_workers` Faust workers as processes,
    and no threads); the alert forwarder, the optimizer and the demo pipeline as processes."""
    faust = config.engine == "faust"
    faust_workers = faust_workers if faust else 0
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    processors = all_processors(config)  # rules are checked before anything starts
    tune_gc()
    stop = stop_on_signals()
    with server_url(config) as url:
        names = config.names
        settings = config.runtime_settings
        runners: list[Ticker | Worker] = []
        if faust:  # the workers fold the events topic and tick; Redis holds their snapshots
            click.echo(f"engine: faust, {faust_workers or 'no'} workers here on {config.kafka_url} (topic {names.topic('events')}, {config.kafka_partitions} partitions)")
        else:
            runners = [Ticker(url=url, names=names, settings=settings), *(Worker(url=url, names=names, processor=p, settings=settings) for p in processors)]
        forward = bool(config.alert_webhook_url or log_alerts)
        # The consumers' groups exist before any alert or advice is written, so they miss none however slowly they start.
        if forward:
            with redis.Redis.from_url(url, socket_timeout=5) as client:
                ensure_group(client, names.stream("alerts"), names.group(FORWARDER_GROUP), start_id="$")
        if with_optimizer:
            ensure_optimizer_groups(config.optimizer_redis_url or url, names)
        click.echo(f"pipepulse running on {url} (state in {config.state_dir})")
        click.echo(f"events: {names.events}; statistics: {names.stream('stats')} and {names.latest('stats')}; dead letters: {names.dead}")
        click.echo(f"alerts: {names.stream('alerts')} (active set {names.latest('alerts')}); health: {names.latest('health')}")
        click.echo(f"recommendations: {names.stream('recommendations')}; optimizer decisions: {names.stream('actions')}")
        click.echo("see the numbers with: pipepulse status   (alerts: pipepulse alerts list; optimizer: pipepulse optimizer status)")

        def children() -> list[Child]:
            started = [(_start_faust_worker(url, config, i), True) for i in range(faust_workers)]
            if forward:
                started.append((_start_alert_forwarder(url, config, log_alerts), True))
            if with_optimizer:
                started.append((_start_optimizer(url, config), True))
            if with_web:
                # The web server is a window, not a part: if its port is taken, the rest runs on without it.
                started.append((spawn([sys.executable, "-m", "processors", "web"], _child_env(url, config)), False))
            if pipeline is not None:
                started.append((_start_pipeline(url, config, pipeline, events_url=config.kafka_url if faust else None), True))
            return started

        serve(stop, runners, children)


def all_processors(config: Config) -> list[Processor]:
    """Every processor built so far, each under its own consumer group and lease."""
    try:
        return [MonitorProcessor(config.monitor_settings())]
    except RuleError as exc:
        raise click.UsageError(str(exc)) from exc


def _child_env(url: str, config: Config) -> dict[str, str]:
    return {**os.environ, "PIPEPULSE_REDIS_URL": url, "PIPEPULSE_PREFIX": config.prefix, "PIPEPULSE_ENGINE": config.engine}


def _start_pipeline(url: str, config: Config, arguments: list[str], events_url: str | None = None) -> subprocess.Popen[bytes]:
    """With `events_url` (the Faust engine's broker) its events go there; control settings stay on Redis."""
    click.echo("demo pipeline: detecting function calls in " + (arguments[arguments.index("--source") + 1] if "--source" in arguments else "the standard library"))
    env = _child_env(url, config) | ({"PIPEPULSE_EVENTS_URL": events_url} if events_url else {})
    return spawn([sys.executable, "-m", "emitters.demo", *arguments], env)


def _start_faust_worker(url: str, config: Config, index: int) -> subprocess.Popen[bytes]:
    """A stable name per slot (static membership): restarted, a worker takes its partitions back at once."""
    return spawn([sys.executable, "-m", "processors", "worker", "--id", f"{socket.gethostname()}-{index}"], _child_env(url, config))


def _start_optimizer(url: str, config: Config) -> subprocess.Popen[bytes]:
    """Its own process, with its own credentials when PIPEPULSE_OPTIMIZER_REDIS_URL is set: it alone writes control settings."""
    command = [sys.executable, "-m", "processors", "optimizer"]
    if config.optimizer_mode:
        command += ["--mode", config.optimizer_mode]
    return spawn(command, _child_env(url, config))


def _start_alert_forwarder(url: str, config: Config, log_alerts: bool) -> subprocess.Popen[bytes]:
    """The alert sinks run as their own process, so a slow webhook receiver can never stall a processor."""
    command = [sys.executable, "-m", "emitters.alert_forward", "--redis-url", url, "--prefix", config.prefix, "--group", FORWARDER_GROUP]
    if config.alert_webhook_url:
        command += ["--webhook", config.alert_webhook_url]
        click.echo(f"forwarding alerts to {config.alert_webhook_url} (Alertmanager webhook v4)")
    if log_alerts:
        command.append("--log")
    return spawn(command, _child_env(url, config))


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print the latest snapshots and runtime figures as JSON.")
@click.pass_obj
def status(config: Config, as_json: bool) -> None:
    """Per-component statistics from the latest window snapshots, and each processor's own health."""
    with server_url(config) as url:
        client = redis.Redis.from_url(url, socket_timeout=5)
        try:
            view = api.overview(client, config.names)
        except redis.RedisError as exc:
            raise click.ClickException(f"reading status from {url}: {exc}") from exc
        finally:
            client.close()
    health, latest, active, advice, optimizer_state, runtime = (view[k] for k in ("health", "stats", "alerts", "recommendations", "optimizer", "runtime"))
    if as_json:
        click.echo(to_json({"components": latest, **{k: view[k] for k in ("health", "alerts", "recommendations", "optimizer", "runtime")}}))
        return
    if health is not None:
        click.echo(health_summary(health))
    if not latest:
        click.echo("no statistics yet: is `pipepulse run` running, and have windows closed (10 s)?")
    else:
        click.echo(status_table(latest))
    click.echo(f"active alerts: {len(active)}" + (f"\n{alerts_cli.active_table(active)}" if active else ""))
    click.echo(f"recommendations: {len(advice)}")
    for rec in advice:
        change = f"{rec['setting']} {rec['current']} -> {rec['proposed']}" if rec["proposed"] is not None else "restart"
        click.echo(f"  {rec['priority']:<8} {rec['component']}: {rec['kind']} ({change}), confidence {rec['confidence']:.0%}: {rec['reason']}")
    if optimizer_state:
        settings = ", ".join(f"{k}={v['value']}" for k, v in optimizer_state["settings"].items()) or "none"
        click.echo(f"optimizer: {optimizer_state['mode']}; settings in force: {settings} (decisions: pipepulse optimizer status)")
    for name, figures in sorted(runtime.items()):
        click.echo(
            f"processor {name}: {figures['events_per_s']:,.0f} events/s, lag {figures['lag_entries']} entries, "
            f"commit p99 {figures['commit_ms_p99'] or 0:.1f} ms, dead letters {figures['dead_letters_total']}, missing batches {figures['missing_batches_total']}"
        )


@cli.command()
@click.option("--into", "into_prefix", default=None, help="Prefix for the rebuilt streams (default: <prefix>-replay).")
@click.option("--decode-workers", type=int, default=None, help="Processes that decode ahead of the fold (default: cores - 1; 0 decodes in-process).")
@click.pass_obj
def replay(config: Config, into_prefix: str | None, decode_workers: int | None) -> None:
    """Rebuild the derived streams from the event log under another prefix and report whether they match the live ones."""
    out_names = Names(into_prefix or f"{config.prefix}-replay")
    tune_gc()
    with server_url(config) as url:
        client = redis.Redis.from_url(url, socket_timeout=30)
        try:
            started = time.perf_counter()
            workers = max(0, min(4, (os.cpu_count() or 1) - 1)) if decode_workers is None else decode_workers
            with click.progressbar(length=client.xlen(config.names.events), label=f"replaying {config.names.events}", file=sys.stderr) as progress:
                report = replay_log(client, config.names, out_names, all_processors(config)[0], decode_workers=workers, on_progress=progress.update)
            elapsed_s = time.perf_counter() - started
        except redis.RedisError as exc:
            raise click.ClickException(f"replaying {config.names.events} on {url}: {exc}") from exc
        finally:
            client.close()
    click.echo(to_json({**report.as_dict(), "into_prefix": out_names.prefix, "seconds": round(elapsed_s, 3)}))
    if not report.matches:
        sys.exit(1)


cli.add_command(alerts_cli.alerts)
cli.add_command(optimizer)
cli.add_command(report)
cli.add_command(components)
cli.add_command(worker)


def main() -> None:
    cli(prog_name="pipepulse")
