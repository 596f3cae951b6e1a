"""The least-privilege ACL the README documents for emitters is enough for them, and no more."""

from __future__ import annotations

import pytest
import redis

from schemas.names import Names

from emitters import Emitter, PerformanceAlert, PerformanceIntegrationService
from processors.embedded import EmbeddedServer
from processors.runtime import write_outputs

from tests.conftest import wait_until
from tests.emitters.test_integration_facade import EVENT
from tests.processors.alerting import run, spread
from tests.processors.helpers import op

EMITTER_ACL = ["on", ">emitter-secret", "resetkeys", "~pipepulse:events", "resetchannels", "-@all", "+xadd", "+ping", "+client|setinfo"]


def test_an_emitter_works_with_xadd_on_the_event_stream_only(real_server: EmbeddedServer) -> None:
    admin = redis.Redis.from_url(real_server.url)
    admin.flushall()
    admin.execute_command("ACL", "SETUSER", "emitter", *EMITTER_ACL)  # type: ignore[no-untyped-call]
    url = f"redis://emitter:emitter-secret@127.0.0.1:{real_server.port}/0"
    em = Emitter("parser", redis_url=url)
    em.record("parse_file", duration_ms=1.0)
    assert em.flush(5)
    em.close()
    assert admin.xlen("pipepulse:events") >= 1
    restricted = redis.Redis.from_url(url)
    with pytest.raises(redis.exceptions.NoPermissionError):
        restricted.set("pipepulse:control:parser", "1")
    with pytest.raises(redis.exceptions.NoPermissionError):
        restricted.xadd("pipepulse:alerts", {"forged": "1"})
    restricted.close()
    admin.execute_command("ACL", "DELUSER", "emitter")  # type: ignore[no-untyped-call]
    admin.close()


INTEGRATION_ACL = [
    "on", ">integration-secret", "resetkeys", "~pipepulse:events", "~pipepulse:latest:*", "~pipepulse:stats", "~pipepulse:health", "~pipepulse:alerts",
    "resetchannels", "-@all", "+xadd", "+ping", "+client|setinfo", "+hgetall", "+xrevrange", "+xreadgroup", "+xack", "+xgroup|create", "+xpending",
]  # fmt: skip


def test_the_integration_service_works_with_its_documented_acl(real_server: EmbeddedServer) -> None:
    admin = redis.Redis.from_url(real_server.url)
    admin.flushall()
    admin.execute_command("ACL", "SETUSER", "integration", *INTEGRATION_ACL)  # type: ignore[no-untyped-call]
    write_outputs(admin, Names(), run(lambda second: {"parser": spread(second, 20, op)}, 12))  # snapshots, as the monitor writes them
    url = f"redis://integration:integration-secret@127.0.0.1:{real_server.port}/0"
    received: list[PerformanceAlert] = []
    with PerformanceIntegrationService(redis_url=url, alert_callback=received.append) as service:
        service.track_operation(component="parser", operation_name="parse", duration_ms=1.0)
        assert service.flush(5) and service.refresh()
        assert service.get_health_status()["components"]["parser"]["status"] == "healthy"
        assert service.get_dashboard_data()["charts"]["timestamps"] and "parser" in service.get_components()
        wait_until(lambda: admin.exists("pipepulse:alerts") and admin.xinfo_groups("pipepulse:alerts"), what="the alert group")
        admin.xadd("pipepulse:alerts", EVENT.to_fields())  # type: ignore[arg-type]
        wait_until(lambda: received, what="the alert, read and acknowledged by the restricted user")
    restricted = redis.Redis.from_url(url)
    with pytest.raises(redis.exceptions.NoPermissionError):
        restricted.hset("pipepulse:latest:health", "current", "{}")
    with pytest.raises(redis.exceptions.NoPermissionError):
        restricted.set("pipepulse:control:parser", "1")
    restricted.close()
    admin.execute_command("ACL", "DELUSER", "integration")  # type: ignore[no-untyped-call]
    admin.close()
