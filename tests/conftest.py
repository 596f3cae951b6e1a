"""Shared fixtures: the real embedded server, a real Kafka-protocol broker, fakeredis; and the deadline-based wait (from emitters.testing)."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Callable, Iterator

import fakeredis
import pytest
import redis

from emitters.testing import wait_until
from processors.embedded import EmbeddedServer, ServerSettings

from tests.kafka_broker import KafkaBroker
from tests.kafka_broker import required as kafka_required

__all__ = ["wait_until"]  # the tests import it from here


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


@pytest.fixture
def prefix() -> str:
    """A stream prefix of its own, so tests sharing the session's server never see each other's keys."""
    return f"t{uuid.uuid4().hex[:10]}"


@pytest.fixture
def client(real_server: EmbeddedServer) -> Iterator[redis.Redis]:
    """A client of the session's real server."""
    c = redis.Redis.from_url(real_server.url)
    yield c
    c.close()


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


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaBroker]:
    """A real Kafka-protocol broker (noida-db) for the session; skipped with the reason when none can start, unless CI requires it."""
    try:
        broker = KafkaBroker(tmp_path_factory.mktemp("kafka")).start()
    except (ImportError, OSError, RuntimeError) as exc:  # no wheel, no binary for this platform, or it would not run
        if kafka_required():
            raise
        pytest.skip(f"no Kafka broker could start here ({exc!r}); CI installs noida-db and requires these tests")
    yield broker
    broker.stop()
