"""Forward alert events to an Alertmanager-style webhook (and/or the log) until SIGTERM or SIGINT.

    python -m emitters.alert_forward --webhook http://127.0.0.1:9094/hook [--group NAME] [--log]
        [--redis-url URL] [--prefix P] [--from-start]

Flags win over PIPEPULSE_REDIS_URL, PIPEPULSE_PREFIX and PIPEPULSE_ALERT_WEBHOOK_URL,
which are read here only, in `main()`. Exit status 0 after a signal, 2 on bad settings.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from dataclasses import dataclass
from types import FrameType
from typing import Callable, Mapping, Sequence

from schemas.alerts import AlertEvent
from schemas.names import DEFAULT_PREFIX

from emitters.alert_sinks import LoggingSink, WebhookForwarder
from emitters.alerts import AlertSubscriber
from emitters.config import DEFAULT_REDIS_URL
from emitters.errors import ConfigError, WebhookError

log = logging.getLogger("pipepulse.alerts")


@dataclass(frozen=True, slots=True, kw_only=True)
class ForwardConfig:
    """What the environment may set; flags override each field."""

    redis_url: str = DEFAULT_REDIS_URL
    prefix: str = DEFAULT_PREFIX
    webhook_url: str | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> ForwardConfig:
        return cls(
            redis_url=environ.get("PIPEPULSE_REDIS_URL") or DEFAULT_REDIS_URL,
            prefix=environ.get("PIPEPULSE_PREFIX") or DEFAULT_PREFIX,
            webhook_url=environ.get("PIPEPULSE_ALERT_WEBHOOK_URL") or None,
        )


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m emitters.alert_forward", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--webhook", metavar="URL", help="POST each paging alert here (default: $PIPEPULSE_ALERT_WEBHOOK_URL)")
    parser.add_argument("--group", default="alert-forward", help="consumer group name; one group sees every alert once (default: %(default)s)")
    parser.add_argument("--consumer", default="c1", help="consumer name; keep it stable so a restart re-reads its pending alerts (default: %(default)s)")
    parser.add_argument("--log", action="store_true", help="also log every alert event, one line each")
    parser.add_argument("--redis-url", help=f"default: $PIPEPULSE_REDIS_URL or {DEFAULT_REDIS_URL}")
    parser.add_argument("--prefix", help=f"stream prefix (default: $PIPEPULSE_PREFIX or {DEFAULT_PREFIX})")
    parser.add_argument("--from-start", action="store_true", help="a new group starts at the oldest alert in the stream, not at the next one")
    return parser.parse_args(argv)


def build_callback(forwarder: WebhookForwarder | None, logging_sink: LoggingSink | None) -> Callable[[AlertEvent], None]:
    """Log first (a retried event may log twice), then forward; a forwarding failure leaves the event pending."""

    def deliver(event: AlertEvent) -> None:
        if logging_sink is not None:
            logging_sink(event)
        if forwarder is not None:
            forwarder(event)

    return deliver


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    args = parse_args(argv)
    config = ForwardConfig.from_env(os.environ if environ is None else environ)
    webhook_url = args.webhook or config.webhook_url
    if not webhook_url and not args.log:
        print("alert_forward: give --webhook (or set PIPEPULSE_ALERT_WEBHOOK_URL), or --log", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    stopping = threading.Event()

    def sleep(seconds: float) -> None:
        """The forwarder's back-off, cut short by a signal: the event stays pending for the next run."""
        if stopping.wait(seconds):
            raise WebhookError("stopping")

    try:
        forwarder = WebhookForwarder(webhook_url, sleep=sleep) if webhook_url else None
        subscriber = AlertSubscriber(
            args.redis_url or config.redis_url,
            build_callback(forwarder, LoggingSink() if args.log else None),
            group=args.group,
            consumer=args.consumer,
            prefix=args.prefix or config.prefix,
            from_start=args.from_start,
        )
    except ConfigError as exc:
        print(f"alert_forward: {exc}", file=sys.stderr)
        return 2

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stopping.set()
        subscriber.stop()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    log.info("forwarding alerts from %s (group %s) to %s", subscriber.stream, subscriber.group, webhook_url or "the log")
    subscriber.run()
    log.info("alert forwarder stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
