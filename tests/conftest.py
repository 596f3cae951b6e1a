"""Shared fixtures: the real embedded server, fakeredis, and a deadline-based wait."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable, Iterator, TypeVar

import fakeredis
import pytest
import redis

from processors.embedded import EmbeddedServer, ServerSettings

T = TypeVar("T")


def wait_until(condition: Callable[[], T], timeout_s: float = 10.0, what: str = "condition") -> T:
    """Poll `condition` until it returns something truthy; fail with `what` at the deadline."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.01)


@pytest.fixture(scope="session")
def real_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedServer]:
    """One embedded server for the session (no AOF: tests that need persistence start their own)."""
    with EmbeddedServer(ServerSettings(data_dir=tmp_path_factory.mktemp("server"), appendonly=False)) as server:
        yield server


@pytest.fixture
def server_factory(tmp_path: Path) -> Iterator[Callable[..., EmbeddedServer]]:
    """Private servers a test may stop and restart; all stopped at the end."""
    started: list[EmbeddedServer] = []

    def make(*, appendonly: bool = True, port: int = 0) -> EmbeddedServer:
        server = EmbeddedServer(ServerSettings(data_dir=tmp_path / f"server{len(started)}", appendonly=appendonly, port=port)).start()
        started.append(server)
        return server

    yield make
    for server in started:
        server.stop()


@pytest.fixture(params=["fake", "real"])
def redis_client(request: pytest.FixtureRequest) -> Iterator[redis.Redis]:
    """The contract backends: fakeredis for speed, the real embedded server for truth."""
    if request.param == "fake":
        client: redis.Redis = fakeredis.FakeRedis()
    else:
        server: EmbeddedServer = request.getfixturevalue("real_server")
        client = redis.Redis.from_url(server.url)
        client.flushall()
    yield client
    client.close()
