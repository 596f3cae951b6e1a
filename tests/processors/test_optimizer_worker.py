"""The optimizer as users run it: `pipepulse optimizer` against the real server, killed at random, switched by the CLI."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import redis

from schemas.control import Action, ControlSetting, Recommendation, decode, encode
from schemas.names import Names

from processors.embedded import EmbeddedServer

from tests.conftest import wait_until
from tests.processors.test_cli import PIPEPULSE, env_for

NAMES = Names()


def recommend(client: redis.Redis, component: str, at_s: float, proposed: int = 3) -> str:
    rec = Recommendation(
        recommendation_id=f"r-{component}-{at_s}", kind="lower_concurrency", component=component, setting="concurrency", current=4, proposed=proposed,
        reason="test", expected_effect="test", priority="high", confidence=1.0, issued_at_s=at_s, expires_at_s=at_s + 600,
    )  # fmt: skip
    client.xadd(NAMES.stream("recommendations"), {"id": rec.recommendation_id, "json": encode(rec)})
    return rec.recommendation_id


def actions(client: redis.Redis) -> list[Action]:
    entries: list[tuple[bytes, dict[bytes, bytes]]] = client.xrange(NAMES.stream("actions"))  # type: ignore[assignment]
    return [decode(Action, fields[b"json"]) for _, fields in entries]


def start(env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([*PIPEPULSE, "optimizer", *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def groups_ready(client: redis.Redis) -> bool:
    try:
        return any(g["name"] == b"pipepulse:group:optimizer" for g in client.xinfo_groups(NAMES.stream("recommendations")))
    except redis.ResponseError:
        return False


def test_killed_at_random_the_optimizer_decides_every_recommendation_exactly_once(real_server: EmbeddedServer, tmp_path: Path) -> None:
    client = redis.Redis.from_url(real_server.url)
    client.flushall()
    env = env_for(tmp_path, PIPEPULSE_REDIS_URL=real_server.url, PIPEPULSE_LEASE_TTL_S="0.5")
    rng = random.Random(5)
    proc = start(env)
    wait_until(lambda: groups_ready(client), timeout_s=20, what="the optimizer's consumer groups")
    sent: list[str] = []
    now = time.time()
    try:
        for round_ in range(4):
            kill_at = rng.randrange(50)
            for i in range(50):
                sent.append(recommend(client, f"c{i % 25}", now + round_ * 100 + i))
                if i == kill_at:
                    proc.send_signal(signal.SIGKILL)
                    proc.communicate()
                    proc = start(env)
        wait_until(lambda: len(actions(client)) >= len(sent), timeout_s=60, what="a decision for every recommendation")
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    decided = [str(a.recommendation_id) for a in actions(client)]
    assert sorted(decided) == sorted(sent)  # each once: none lost, none decided twice
    for i in range(25):
        body = client.hget(NAMES.control(f"c{i}"), "concurrency")
        assert decode(ControlSetting, body).version == 1  # applied once, the repeats were in cooldown
    assert "Traceback" not in err
    client.close()


def cli(env: dict[str, str], *args: str) -> str:
    done = subprocess.run([*PIPEPULSE, "optimizer", *args], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_the_kill_switch_and_dry_run_from_the_cli(real_server: EmbeddedServer, tmp_path: Path) -> None:
    client = redis.Redis.from_url(real_server.url)
    client.flushall()
    env = env_for(tmp_path, PIPEPULSE_REDIS_URL=real_server.url)
    proc = start(env)
    try:
        wait_until(lambda: groups_ready(client), timeout_s=20, what="the optimizer's consumer groups")
        assert "optimizer disabled: applied" in cli(env, "disable", "--reason", "incident 42", "--by", "alice")
        recommend(client, "parser", time.time())
        wait_until(lambda: any(a.decision == "skipped" for a in actions(client)), what="the skipped decision")
        assert client.hgetall(NAMES.control("parser")) == {}
        assert "optimizer dry_run: applied" in cli(env, "dry-run")
        recommend(client, "parser", time.time())
        wait_until(lambda: any(a.decision == "dry_run" for a in actions(client)), what="the dry-run decision")
        assert client.hgetall(NAMES.control("parser")) == {}
        assert "optimizer enabled: applied" in cli(env, "enable")
        recommend(client, "parser", time.time())
        written = wait_until(lambda: client.hget(NAMES.control("parser"), "concurrency"), what="the control setting")
        assert decode(ControlSetting, written).value == 3
        status: dict[str, Any] = json.loads(cli(env, "status", "--json"))
        assert status["state"]["mode"] == "enabled" and status["state"]["settings"]["parser/concurrency"]["value"] == 3
        trail = [(a["decision"], a["reason"].split(":")[0]) for a in reversed(status["recent"])]
        assert trail == [
            ("mode_changed", "enabled -> disabled by alice"), ("skipped", "kill_switch"),
            ("mode_changed", "disabled -> dry_run by " + trail[2][1].rsplit(" ", 1)[-1]), ("dry_run", "would apply"),
            ("mode_changed", "dry_run -> enabled by " + trail[4][1].rsplit(" ", 1)[-1]), ("applied", "lower_concurrency"),
        ]  # fmt: skip
        assert "parser/concurrency = 3 (version 1" in cli(env, "status")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)
    client.close()
