"""`pipepulse alerts`: list active and recent alerts, acknowledge them, and silence them.

Acks and silences are written as command events to the event log (so they are
event-sourced: they survive restarts and replays); the command then waits a
few seconds to show that the monitor applied them.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import time
import uuid
from typing import Any, Callable, Iterator, cast

import click
import redis

from schemas.alerts import SEVERITIES
from schemas.codec import PAYLOAD_FIELD, encode_batch
from schemas.events import AlertCommand, Batch
from schemas.names import EVENTS_MAXLEN, Names

from processors import matchers as label_matchers
from processors.config import Config
from processors.errors import ProcessorError
from processors.scaleout.records import send_record
from processors.connect import server_url
from processors.contract import to_json

CLI_COMPONENT = "pipepulse-cli"
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhd]?)$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def duration_s(text: str) -> float:
    """"90", "90s", "15m", "2h", "1d" in seconds."""
    match = _DURATION.match(text.strip())
    if match is None or float(match.group(1)) <= 0:
        raise click.BadParameter(f"{text!r} is not a duration such as 90s, 15m, 2h or 1d")
    return float(match.group(1)) * _UNITS[match.group(2)]


def _client(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, socket_timeout=5, decode_responses=True)


@click.group()
def alerts() -> None:
    """Active and recent alerts; acknowledge and silence them."""


@alerts.command(name="list")
@click.option("--recent", type=int, default=10, show_default=True, help="Also show this many recent transitions.")
@click.option("--json", "as_json", is_flag=True, help="Print active alerts, silences and recent transitions as JSON.")
@click.pass_obj
def list_alerts(config: Config, recent: int, as_json: bool) -> None:
    """Active alerts (worst first), silences in force, and the latest transitions."""
    names = config.names
    with server_url(config) as url, reading(url) as client:
        active = sorted((json.loads(v) for v in client.hvals(names.latest("alerts"))), key=worst_first)
        silences: dict[str, Any] = {str(k): json.loads(v) for k, v in client.hgetall(names.latest("silences")).items()}
        entries = cast(list[tuple[str, dict[str, str]]], client.xrevrange(names.stream("alerts"), count=recent) if recent > 0 else [])
        history = [json.loads(fields["json"]) for _, fields in entries]
    if as_json:
        click.echo(to_json({"active": active, "silences": silences, "recent": history}))
        return
    click.echo(active_table(active) if active else "no active alerts")
    for silence_id, body in sorted(silences.items()):
        click.echo(f"silence {silence_id}: {body['matchers']} until {clock_text(body['until_s'])} by {body['by'] or '?'}: {body['reason']}")
    if history:
        click.echo("recent:")
        for event in history:
            click.echo(f"  {clock_text(event['at_s'])}  {event['transition']:<16} {event['severity']:<8} {event['fingerprint']}  {event['message']}")


def active_table(active: list[dict[str, Any]]) -> str:
    lines = []
    for alert in active:
        flags = [f for f, on in (("acked", alert.get("acked_by")), ("silenced", alert.get("silenced_by")), (f"escalated x{alert.get('escalation')}", alert.get("escalation"))) if on]
        since = alert.get("fired_at_s") or alert.get("active_since_s")
        lines.append(f"{alert['severity'].upper():<8} {alert['state']:<8} {alert['fingerprint']}  {alert['rule']:<28} since {clock_text(since)}  {alert['message']} {' '.join(f'[{f}]' for f in flags)}".rstrip())
    return "\n".join(lines)


def worst_first(alert: dict[str, Any]) -> tuple[int, float]:
    rank = -SEVERITIES.index(alert["severity"]) if alert["severity"] in SEVERITIES else 1  # critical first
    return rank, alert.get("fired_at_s") or alert.get("active_since_s") or 0.0


def clock_text(at_s: float | None) -> str:
    return "-" if at_s is None else time.strftime("%H:%M:%S", time.gmtime(at_s))


@alerts.command()
@click.argument("fingerprint")
@click.option("--reason", default="", help="Why (kept with the alert).")
@click.option("--for", "for_", default="1h", show_default=True, help="How long the ack lasts (90s, 15m, 2h, 1d).")
@click.option("--by", default=None, help="Who acknowledges (default: $USER).")
@click.pass_obj
def ack(config: Config, fingerprint: str, reason: str, for_: str, by: str | None) -> None:
    """Acknowledge an active alert; it is un-acknowledged automatically if it gets worse, or when the ack expires."""
    _alert_command(config, "ack", fingerprint, by, reason, duration_s(for_), lambda alert: alert is not None and alert.get("acked_by") is not None)


@alerts.command()
@click.argument("fingerprint")
@click.option("--by", default=None, help="Who withdraws the ack (default: $USER).")
@click.pass_obj
def unack(config: Config, fingerprint: str, by: str | None) -> None:
    """Withdraw an acknowledgement."""
    _alert_command(config, "unack", fingerprint, by, "", 0.0, lambda alert: alert is None or alert.get("acked_by") is None)


@alerts.command()
@click.option("-m", "--match", "matchers", multiple=True, required=True, help="label=value, label!=value, label=~regex or label!~regex; repeatable, all must match.")
@click.option("--reason", default="", help="Why (shown with the silence).")
@click.option("--for", "for_", default="2h", show_default=True, help="How long the silence lasts (90s, 15m, 2h, 1d).")
@click.option("--by", default=None, help="Who silences (default: $USER).")
@click.pass_obj
def silence(config: Config, matchers: tuple[str, ...], reason: str, for_: str, by: str | None) -> None:
    """Silence alerts whose labels (and alertname, severity) match: they stay visible but page no one."""
    parsed: dict[str, str] = {}
    for matcher in matchers:
        found = re.match(r"^([A-Za-z_][A-Za-z0-9_]*)(=~|!~|!=|=)(.*)$", matcher)
        if found is None:
            raise click.BadParameter(f"{matcher!r} is not label=value, label!=value, label=~regex or label!~regex")
        label, op, value = found.groups()
        if label in parsed:
            raise click.BadParameter(f"label {label!r} is matched twice: one matcher per label")
        if op in ("=~", "!~"):
            try:
                re.compile(value)
            except re.error as exc:
                raise click.BadParameter(f"{matcher!r}: {exc}") from exc
        parsed[label] = op + value
    if label_matchers.parse(parsed) is None:  # what the monitor would refuse (an over-long matcher)
        raise click.BadParameter(f"matchers {parsed} cannot be used (each at most {label_matchers.MAX_MATCHER_CHARS} characters)")
    silence_id = uuid.uuid4().hex[:12]
    with server_url(config) as url:
        _send(url, config, AlertCommand(timestamp_s=time.time(), component=CLI_COMPONENT, action="silence", target=silence_id, by=who(by), reason=reason, expires_in_s=duration_s(for_), matchers=parsed))
        applied = await_condition(url, lambda client: client.hexists(config.names.latest("silences"), silence_id))
    click.echo(f"silence {silence_id} {'in force' if applied else 'sent (not applied yet: is pipepulse run running?)'}; end it early with: pipepulse alerts expire {silence_id}")


@alerts.command()
@click.argument("silence_id")
@click.pass_obj
def expire(config: Config, silence_id: str) -> None:
    """End a silence before its expiry."""
    with server_url(config) as url:
        with reading(url) as client:
            if not client.hexists(config.names.latest("silences"), silence_id):
                raise click.ClickException(f"no silence {silence_id} in force (see pipepulse alerts list)")
        _send(url, config, AlertCommand(timestamp_s=time.time(), component=CLI_COMPONENT, action="expire_silence", target=silence_id))
        applied = await_condition(url, lambda client: not client.hexists(config.names.latest("silences"), silence_id))
    click.echo(f"silence {silence_id} {'ended' if applied else 'expiry sent (not applied yet)'}")


def _alert_command(config: Config, action: str, fingerprint: str, by: str | None, reason: str, expires_in_s: float, done: Callable[[dict[str, Any] | None], bool]) -> None:
    table = config.names.latest("alerts")
    with server_url(config) as url:
        with reading(url) as client:
            matches = [str(fp) for fp in client.hkeys(table) if str(fp).startswith(fingerprint)]
        if len(matches) != 1:
            raise click.ClickException(f"{fingerprint!r} matches {len(matches)} active alerts (see pipepulse alerts list)")
        (target,) = matches
        _send(url, config, AlertCommand(timestamp_s=time.time(), component=CLI_COMPONENT, action=action, target=target, by=who(by), reason=reason, expires_in_s=expires_in_s))  # type: ignore[arg-type]
        applied = await_condition(url, lambda client: done(json.loads(client.hget(table, target) or "null")))
    click.echo(f"{action} {target}: {'applied' if applied else 'sent (not applied yet: is pipepulse run running?)'}")


def who(by: str | None) -> str:
    return by or os.environ.get("USER") or "unknown"


def _send(url: str, config: Config, command: AlertCommand) -> None:
    with reading(url) as client:
        try:
            send_command(client, config.names, command, config.command_kafka_url)
        except ProcessorError as exc:
            raise click.ClickException(str(exc)) from exc


def send_command(client: redis.Redis, names: Names, command: AlertCommand, kafka_url: str | None = None) -> None:
    """One batch from a one-off producer (seq 0), appended to the event log like any emitter's: the Redis
    stream, or with `kafka_url` the Faust engine's events topic (where the monitor reads then)."""
    batch = Batch(producer_id=f"cli-{uuid.uuid4().hex}", seq=0, sent_at_s=command.timestamp_s, component=CLI_COMPONENT, pid=os.getpid(), host=socket.gethostname(), dropped_total=0, invalid_total=0, events=(command,))
    if kafka_url is not None:
        send_record(kafka_url, names.topic("events"), CLI_COMPONENT, encode_batch(batch))
        return
    client.xadd(names.events, {PAYLOAD_FIELD: encode_batch(batch)}, maxlen=EVENTS_MAXLEN, approximate=True)


def await_condition(url: str, condition: Callable[[redis.Redis], Any], timeout_s: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout_s
    with reading(url) as client:
        while time.monotonic() < deadline:
            if condition(client):
                return True
            time.sleep(0.1)
    return False


@contextlib.contextmanager
def reading(url: str) -> Iterator[redis.Redis]:
    """A short-lived client whose Redis errors become one clear CLI error."""
    client = _client(url)
    try:
        yield client
    except redis.RedisError as exc:
        raise click.ClickException(f"talking to {url}: {exc}") from exc
    finally:
        client.close()
