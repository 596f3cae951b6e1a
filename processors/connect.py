"""Finds the server a command talks to: the configured URL, else the embedded one (started on demand)."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Iterator

import redis

from processors.config import Config
from processors.embedded import EmbeddedServer, ServerSettings


def url_file(config: Config) -> Path:
    """Where a running embedded server leaves its URL, so other commands attach to it."""
    return config.state_dir / "server.url"


def running_embedded_url(config: Config) -> str | None:
    try:
        url = url_file(config).read_text().strip()
    except OSError:
        return None
    client = redis.Redis.from_url(url, socket_connect_timeout=0.5, socket_timeout=0.5)
    try:
        return url if client.ping() else None
    except redis.RedisError:
        return None
    finally:
        client.close()


@contextlib.contextmanager
def embedded(config: Config) -> Iterator[EmbeddedServer]:
    """Start the embedded server under the state directory and advertise its URL while it runs."""
    server = EmbeddedServer(ServerSettings(data_dir=config.state_dir / "data", port=config.server_port))
    with server:
        url_file(config).write_text(server.url)
        try:
            yield server
        finally:
            url_file(config).unlink(missing_ok=True)


@contextlib.contextmanager
def server_url(config: Config) -> Iterator[str]:
    """The configured URL; else a running embedded server's; else a new embedded server for this command."""
    if config.redis_url is not None:
        yield config.redis_url
        return
    attached = running_embedded_url(config)
    if attached is not None:
        yield attached
        return
    with embedded(config) as server:
        yield server.url
