"""Settings of the pipepulse commands, built from the environment at the entry point only."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from schemas import DEFAULT_PREFIX, Names

from processors.embedded import default_state_dir
from processors.errors import ConfigError

DEFAULT_SERVER_PORT = 6390


@dataclass(frozen=True, slots=True, kw_only=True)
class Config:
    """`redis_url=None` means: use the embedded server (started on demand)."""

    redis_url: str | None
    prefix: str
    state_dir: Path
    server_port: int

    @property
    def names(self) -> Names:
        return Names(self.prefix)

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
        return cls(redis_url=env.get("PIPEPULSE_REDIS_URL") or None, prefix=prefix, state_dir=state_dir, server_port=port)
