"""`pipepulse report`: a JSON and an HTML report of a period, read from the derived streams.

The report is a function of the log, not of the wall clock: the period ends by default at
the newest statistics window in the log, and entries are selected by their own event time.
"""

from __future__ import annotations

import io
import math
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import cast

import click
import redis

from schemas.names import Names

from processors.alerts_cli import duration_s, reading
from processors.config import Config
from processors.connect import server_url
from processors.contract import to_json
from processors.report_html import render_html
from processors.reporting import STREAMS, build_report, newest_window_end_s

READ_CHUNK = 1000  # entries per XRANGE: large reads without one reply holding a whole stream


def _parse_until(ctx: click.Context, param: click.Parameter, text: str | None) -> float | None:
    """Epoch seconds, or an ISO 8601 time (UTC unless it gives an offset)."""
    if text is None:
        return None
    try:
        value = float(text)
    except ValueError:
        try:
            moment = datetime.fromisoformat(text)
        except ValueError as exc:
            raise click.BadParameter(f"{text!r} is neither epoch seconds nor an ISO 8601 time such as 2030-01-01T12:00:00Z") from exc
        value = (moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)).timestamp()
    if not math.isfinite(value) or value <= 0:
        raise click.BadParameter(f"{text!r} is not a time after 1970")
    return value


@click.command()
@click.option("--since", "since_s", default="24h", show_default=True, callback=lambda ctx, param, text: duration_s(text), help="Length of the period, ending at --until (90s, 15m, 2h, 1d).")
@click.option("--until", "until", callback=_parse_until, default=None, help="End of the period: epoch seconds or ISO 8601 (UTC); default: the newest statistics window.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("."), show_default=True, help="Directory for report-<until>.json and .html.")
@click.option("--json-only", is_flag=True, help="Write the JSON report only.")
@click.pass_obj
def report(config: Config, since_s: float, until: float | None, out: Path, json_only: bool) -> None:
    """Statistics, trends, alerts, health, advice and optimizer actions over a period, as JSON and a self-contained HTML page."""
    with server_url(config) as url, reading(url) as client:
        entries = read_streams(client, config.names)
    end_s = until if until is not None else newest_window_end_s(entries)
    if end_s is None:
        raise click.ClickException(f"no statistics in {config.names.stream('stats')} or {config.names.stream('stats_1m')}: nothing to report (is pipepulse run running?)")
    document = build_report(entries, prefix=config.prefix, since_s=since_s, until_s=end_s)
    out.mkdir(parents=True, exist_ok=True)
    stem = out / f"report-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime(end_s))}"
    texts = {stem.with_suffix(".json"): to_json(document) + "\n"}
    if not json_only:
        texts[stem.with_suffix(".html")] = render_html(document)
    for path, text in texts.items():
        path.write_text(text, encoding="utf-8")
        click.echo(str(path))


def read_streams(client: redis.Redis, names: Names, show_progress: bool = True) -> dict[str, list[dict[str, str]]]:
    """Every entry of each derived stream (a client decoding responses), in chunks, with progress on stderr: a day's report reads a lot."""
    entries: dict[str, list[dict[str, str]]] = {}
    for short in STREAMS:
        stream = names.stream(short)
        found: list[dict[str, str]] = []
        with click.progressbar(length=client.xlen(stream), label=f"reading {stream}", file=sys.stderr if show_progress else io.StringIO()) as progress:
            start = "-"
            while True:
                chunk = cast(list[tuple[str, dict[str, str]]], client.xrange(stream, min=start, max="+", count=READ_CHUNK))
                found.extend(fields for _, fields in chunk)
                progress.update(len(chunk))
                if len(chunk) < READ_CHUNK:
                    break
                start = f"({chunk[-1][0]}"  # exclusive: after the last entry read
        entries[short] = found
    return entries
