"""Settings of the pipepulse commands, built from the environment at the entry point only."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence, TypeVar

from schemas import DEFAULT_PREFIX, Names
from schemas.control import MODES

from processors.embedded import default_state_dir
from processors.errors import ConfigError
from processors.monitor import MonitorSettings
from processors.rules import load_rules
from processors.runtime import RuntimeSettings
from processors.stats import StatsSettings

DEFAULT_SERVER_PORT = 6390
ENGINES = ("redis", "faust")  # where the monitor runs: in `pipepulse run`, or in Faust workers on Kafka
T = TypeVar("T", int, float)


@dataclass(frozen=True, slots=True, kw_only=True)
class Config:
    """`redis_url=None` means: use the embedded server (started on demand)."""

    redis_url: str | None
    prefix: str
    state_dir: Path
    server_port: int
    window_s: int = 10
    grace_s: float = 0.25
    stale_after_s: float = 30.0
    tick_interval_s: float = 1.0
    lease_ttl_s: float = 5.0
    rules_file: Path | None = None
    alert_webhook_url: str | None = None
    optimizer_redis_url: str | None = None  # the optimizer's own credentials (it alone may write control settings)
    optimizer_mode: str | None = None  # None: keep the mode the optimizer had (enabled when new)
    web_port: int = 8765
    web_host: str = "127.0.0.1"  # 0.0.0.0 only inside a container whose port is published to the host's loopback
    web_token: str | None = None  # None: one kept in the state directory, made on first use
    engine: str = "redis"  # or "faust": pipepulse run leaves the monitor to Faust workers
    kafka_url: str | None = None  # kafka://host:port[,host:port]: the Faust engine's broker (pipepulse worker, run --engine faust)
    kafka_partitions: int = 8  # of the events topic, when the workers create it: the most workers that share the intake

    @property
    def names(self) -> Names:
        return Names(self.prefix)

    @property
    def command_kafka_url(self) -> str | None:
        """Where acks and silences go besides Redis: the events topic, under the Faust engine only."""
        return self.kafka_url if self.engine == "faust" else None

    @property
    def stats_settings(self) -> StatsSettings:
        return StatsSettings(window_s=self.window_s, grace_s=self.grace_s, stale_after_s=self.stale_after_s)

    def monitor_settings(self) -> MonitorSettings:
        """Loads the rules (shipped defaults plus `rules_file`): a RuleError names the file, rule and field."""
        return MonitorSettings(rules=load_rules(self.rules_file), stats=self.stats_settings)

    @property
    def runtime_settings(self) -> RuntimeSettings:
        return RuntimeSettings(tick_interval_s=self.tick_interval_s, lease_ttl_s=self.lease_ttl_s)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Config:
        env = os.environ if environ is None else environ
        port_text = env.get("PIPEPULSE_SERVER_PORT", str(DEFAULT_SERVER_PORT))
        try:
            port = int(port_text)
        except ValueError as exc:
            raise ConfigError(f"PIPEPULSE_SERVER_PORT={port_text!r} is not a port number") from exc
        if not 0 <= port < 65536:
            raise ConfigError(f"PIPEPULSE_SERVER_PORT={port} is out of range 0..65535")
        prefix = env.get("PIPEPULSE_PREFIX", DEFAULT_PREFIX)
        try:
            Names(prefix)
        except ValueError as exc:
            raise ConfigError(f"PIPEPULSE_PREFIX: {exc}") from exc
        state_dir = Path(env["PIPEPULSE_STATE_DIR"]) if env.get("PIPEPULSE_STATE_DIR") else default_state_dir(env)
        window_s = _number(env, "PIPEPULSE_WINDOW_S", int, 10)
        if window_s < 2 or 60 % window_s:
            raise ConfigError(f"PIPEPULSE_WINDOW_S={window_s} must divide 60 and be at least 2")
        return cls(
            redis_url=env.get("PIPEPULSE_REDIS_URL") or None,
            prefix=prefix,
            state_dir=state_dir,
            server_port=port,
            window_s=window_s,
            grace_s=_number(env, "PIPEPULSE_GRACE_S", float, 0.25),
            stale_after_s=_number(env, "PIPEPULSE_STALE_AFTER_S", float, 30.0, minimum=1.0),
            tick_interval_s=_number(env, "PIPEPULSE_TICK_INTERVAL_S", float, 1.0, minimum=0.01),
            lease_ttl_s=_number(env, "PIPEPULSE_LEASE_TTL_S", float, 5.0, minimum=0.1),
            rules_file=Path(env["PIPEPULSE_RULES_FILE"]) if env.get("PIPEPULSE_RULES_FILE") else None,
            alert_webhook_url=env.get("PIPEPULSE_ALERT_WEBHOOK_URL") or None,
            optimizer_redis_url=env.get("PIPEPULSE_OPTIMIZER_REDIS_URL") or None,
            optimizer_mode=_choice(env, "PIPEPULSE_OPTIMIZER_MODE", MODES),
            web_port=_number(env, "PIPEPULSE_WEB_PORT", int, 8765, minimum=1),
            web_host=env.get("PIPEPULSE_WEB_HOST") or "127.0.0.1",
            web_token=env.get("PIPEPULSE_WEB_TOKEN") or None,
            engine=_choice(env, "PIPEPULSE_ENGINE", ENGINES) or "redis",
            kafka_url=env.get("PIPEPULSE_KAFKA_URL") or None,
            kafka_partitions=_number(env, "PIPEPULSE_KAFKA_PARTITIONS", int, 8, minimum=1),
        )


def _choice(env: Mapping[str, str], variable: str, choices: Sequence[str]) -> str | None:
    """The variable's value, one of `choices`; None when unset."""
    value = env.get(variable) or None
    if value is not None and value not in choices:
        raise ConfigError(f"{variable}={value!r} must be one of {', '.join(choices)}")
    return value


def _number(env: Mapping[str, str], variable: str, kind: type[T], default: T, minimum: float = 0.0) -> T:
    """A non-negative number setting; a bad value is an error naming the variable."""
    text = env.get(variable)
    if text is None:
        return default
    try:
        value = kind(text)
    except ValueError as exc:
        raise ConfigError(f"{variable}={text!r} is not a {kind.__name__}") from exc
    if not math.isfinite(value) or value < minimum:
        raise ConfigError(f"{variable}={text!r} must be a finite number of at least {minimum}")
    return value
