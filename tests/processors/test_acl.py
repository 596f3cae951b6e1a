"""The least-privilege ACLs the README documents for processors and the optimizer are enough for `pipepulse run`, and no more."""

from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path

import pytest
import redis

from processors.embedded import EmbeddedServer

from tests.conftest import wait_until
from tests.processors.helpers import T0, batch, op, tick
from tests.processors.test_cli import PIPEPULSE, env_for

PROCESSOR_KEYS = ["~pipepulse:events", "~pipepulse:dead", "~pipepulse:stats", "~pipepulse:stats_1m", "~pipepulse:alerts", "~pipepulse:health", "~pipepulse:forecasts", "~pipepulse:recommendations", "~pipepulse:latest:*", "~pipepulse:checkpoint:*", "~pipepulse:lease:*", "~pipepulse:runtime"]
PROCESSOR_COMMANDS = [
    "+@read", "+xreadgroup", "+xack", "+xadd", "+xgroup|create", "+hset", "+hdel", "+del", "+set", "+pexpire", "+eval",
    "+multi", "+exec", "+watch", "+unwatch", "+info", "+ping", "+client|setinfo",
]  # fmt: skip
PROCESSOR_ACL = ["on", ">processor-secret", "resetkeys", *PROCESSOR_KEYS, "resetchannels", "-@all", *PROCESSOR_COMMANDS]
OPTIMIZER_KEYS = [
    "~pipepulse:recommendations", "~pipepulse:health", "~pipepulse:optimizer_commands", "~pipepulse:actions", "~pipepulse:control:*",
    "~pipepulse:latest:optimizer", "~pipepulse:checkpoint:optimizer", "~pipepulse:lease:optimizer", "~pipepulse:runtime", "~pipepulse:dead",
]  # fmt: skip
OPTIMIZER_ACL = ["on", ">optimizer-secret", "resetkeys", *OPTIMIZER_KEYS, "resetchannels", "-@all", *PROCESSOR_COMMANDS]


def test_pipepulse_run_works_with_the_processor_acl_and_cannot_write_elsewhere(real_server: EmbeddedServer, tmp_path: Path) -> None:
    admin = redis.Redis.from_url(real_server.url)
    admin.flushall()
    admin.execute_command("ACL", "SETUSER", "processor", *PROCESSOR_ACL)
    admin.execute_command("ACL", "SETUSER", "optimizer", *OPTIMIZER_ACL)
    url = f"redis://processor:processor-secret@127.0.0.1:{real_server.port}/0"
    optimizer_url = f"redis://optimizer:optimizer-secret@127.0.0.1:{real_server.port}/0"
    for _, fields in (batch([op(T0 + 1)], seq=0), tick(T0 + 11)):
        admin.xadd("pipepulse:events", fields)  # type: ignore[arg-type]
    env = env_for(tmp_path, PIPEPULSE_REDIS_URL=url, PIPEPULSE_OPTIMIZER_REDIS_URL=optimizer_url)
    run = subprocess.Popen([*PIPEPULSE, "run"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_until(lambda: admin.hget("pipepulse:latest:producers", "p1"), timeout_s=20, what="statistics written under the processor ACL")
        wait_until(lambda: admin.hget("pipepulse:runtime", "monitor"), timeout_s=20, what="runtime figures under the processor ACL")
        wait_until(lambda: admin.hget("pipepulse:runtime", "optimizer"), timeout_s=20, what="the optimizer running under its ACL")
        switched = subprocess.run([*PIPEPULSE, "optimizer", "dry-run"], env={**env, "PIPEPULSE_REDIS_URL": optimizer_url}, capture_output=True, text=True, timeout=60)
        assert "optimizer dry_run: applied" in switched.stdout, switched.stderr
    finally:
        run.send_signal(signal.SIGTERM)
        _, err = run.communicate(timeout=30)
    assert run.returncode == 0, err
    assert "NOPERM" not in err and "NoPermission" not in err
    assert json.loads(admin.hget("pipepulse:latest:producers", "p1"))["events_total"] == 1  # type: ignore[arg-type]
    restricted = redis.Redis.from_url(url)
    with pytest.raises(redis.exceptions.NoPermissionError):
        restricted.set("pipepulse:control:parser", "1")  # control settings belong to the optimizer alone
    with pytest.raises(redis.exceptions.NoPermissionError):
        restricted.flushall()
    restricted.close()
    with redis.Redis.from_url(optimizer_url) as optimizer:
        optimizer.hset("pipepulse:control:parser", "concurrency", "{}")  # the optimizer alone may
        with pytest.raises(redis.exceptions.NoPermissionError):
            optimizer.xadd("pipepulse:events", {"b": "x"})
    admin.execute_command("ACL", "DELUSER", "processor", "optimizer")
    admin.close()


def test_the_readme_documents_these_acls() -> None:
    readme = (Path(__file__).parent.parent.parent / "README.md").read_text()
    assert " ".join(["ACL SETUSER processor", *PROCESSOR_ACL]).replace(">processor-secret", ">SECRET") in readme
    assert " ".join(["ACL SETUSER optimizer", *OPTIMIZER_ACL]).replace(">optimizer-secret", ">SECRET") in readme
