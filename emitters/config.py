"""Emitter settings, read from the environment only when an entry point asks."""

from __future__ import annotations

import os
from dataclasses import dataclass, fields
from typing import Mapping

from schemas import DEFAULT_PREFIX

from emitters.errors import ConfigError

# The embedded server's address (`pipepulse server`), so the zero-setup pieces find each other.
DEFAULT_REDIS_URL = "redis://127.0.0.1:6390/0"


@dataclass(frozen=True, slots=True, kw_only=True)
class EmitterConfig:
    """What an Emitter can be told; `from_env` maps each field to `PIPEPULSE_<FIELD>`."""

    redis_url: str = DEFAULT_REDIS_URL
    # Where batches go when not to redis_url: a kafka:// URL for the Faust engine, while control settings
    # and alerts stay on redis_url. Empty: to redis_url (which may itself be a kafka:// URL).
    events_url: str = ""
    prefix: str = DEFAULT_PREFIX
    # 100k rows is about 20 MB: two seconds of a 50k events/s burst, or a short Redis outage.
    buffer_max_events: int = 100_000
    batch_max_events: int = 1_000
    flush_interval_s: float = 0.05
    heartbeat_interval_s: float = 10.0
    in_progress_interval_s: float = 1.0  # how often the in-progress gauges are reported (sampled every flush interval)
    socket_timeout_s: float = 1.0

    def __post_init__(self) -> None:
        for name, low in (("buffer_max_events", 1), ("batch_max_events", 1)):
            if getattr(self, name) < low:
                raise ConfigError(f"{name} must be at least {low}, got {getattr(self, name)}")
        for name in ("flush_interval_s", "heartbeat_interval_s", "in_progress_interval_s", "socket_timeout_s"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"{name} must be positive, got {getattr(self, name)}")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> EmitterConfig:
        env = os.environ if environ is None else environ
        values: dict[str, object] = {}
        for field in fields(cls):
            variable = f"PIPEPULSE_{field.name.upper()}"
            if variable not in env:
                continue
            raw = env[variable]
            kind = type(getattr(cls(), field.name))
            try:
                values[field.name] = kind(raw)
            except ValueError as exc:
                raise ConfigError(f"{variable}={raw!r} is not a valid {kind.__name__}") from exc
        try:
            return cls(**values)  # type: ignore[arg-type]
        except ConfigError as exc:
            raise ConfigError(f"{exc} (from the PIPEPULSE_* environment)") from exc
