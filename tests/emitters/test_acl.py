"""The least-privilege ACL the README documents for emitters is enough for them, and no more."""

from __future__ import annotations

import pytest
import redis

from emitters import Emitter
from processors.embedded import EmbeddedServer

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
