"""`pipepulse alerts` and `pipepulse status` against a running `pipepulse run`: list, ack, silence, expire."""

from __future__ import annotations

import json
import re
import signal
import subprocess
from pathlib import Path
from typing import Any

import redis

from processors.embedded import EmbeddedServer

from tests.conftest import wait_until
from tests.processors.helpers import T0, batch, op
from tests.processors.test_cli import PIPEPULSE, env_for


def test_alerts_are_listed_acked_silenced_and_shown_in_status(real_server: EmbeddedServer, tmp_path: Path) -> None:
    client = redis.Redis.from_url(real_server.url, decode_responses=True)
    client.flushall()
    env = env_for(tmp_path, PIPEPULSE_REDIS_URL=real_server.url, PIPEPULSE_PREFIX="cli")
    run = subprocess.Popen([*PIPEPULSE, "run", "--no-log-alerts"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def cli(*args: str) -> str:
        result = subprocess.run([*PIPEPULSE, *args], env=env, capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        return result.stdout

    try:
        _, fields = batch([op(T0 + i / 100, ok=i % 2 == 0, error_type="KeyError") for i in range(100)], seq=0)
        client.xadd("cli:events", fields)  # type: ignore[arg-type]
        wait_until(lambda: client.hlen("cli:latest:alerts"), timeout_s=20, what="the error-rate alert")

        def errors_alert() -> dict[str, Any]:
            (found,) = [a for a in json.loads(cli("alerts", "list", "--json", "--recent", "30"))["active"] if a["rule"] == "max_error_rate"]
            return found  # type: ignore[no-any-return]

        active = errors_alert()
        assert (active["rule"], active["severity"], active["state"]) == ("max_error_rate", "critical", "firing")
        fp = active["fingerprint"]
        listed = cli("alerts", "list")
        assert "CRITICAL" in listed and fp in listed and "max_error_rate" in listed
        status = cli("status")
        assert re.search(r"health \d+/100 \((good|warning|critical)\)", status)  # a critical alert is never "excellent"
        assert re.search(r"active alerts: \d", status) and fp in status

        assert f"ack {fp}: applied" in cli("alerts", "ack", fp[:6], "--reason", "looking into it", "--for", "30m", "--by", "ana")
        acked = errors_alert()
        assert (acked["acked_by"], acked["ack_reason"]) == ("ana", "looking into it")
        assert f"unack {fp}: applied" in cli("alerts", "unack", fp)

        out = cli("alerts", "silence", "-m", "component=parser", "-m", "severity=~crit.*", "--for", "2h", "--reason", "maintenance")
        silence_id = re.search(r"silence (\w+) in force", out).group(1)  # type: ignore[union-attr]
        assert errors_alert()["silenced_by"] == [silence_id]
        silences = json.loads(cli("alerts", "list", "--json"))["silences"]
        assert silences[silence_id]["matchers"] == {"component": "=parser", "severity": "=~crit.*"}
        assert f"silence {silence_id} ended" in cli("alerts", "expire", silence_id)
        recent = json.loads(cli("alerts", "list", "--json", "--recent", "30"))["recent"]
        transitions = [e["transition"] for e in recent if e["rule"] == "max_error_rate"]
        assert transitions == ["unsilenced", "silenced", "unacked", "acked", "firing"]  # newest first
    finally:
        run.send_signal(signal.SIGTERM)
        _, err = run.communicate(timeout=30)
        client.close()
    assert run.returncode == 0, err


def test_bad_alert_commands_are_refused_clearly(real_server: EmbeddedServer, tmp_path: Path) -> None:
    redis.Redis.from_url(real_server.url).flushall()
    env = env_for(tmp_path, PIPEPULSE_REDIS_URL=real_server.url, PIPEPULSE_PREFIX="bad")
    cases = {
        ("alerts", "ack", "nope"): "matches 0 active alerts",
        ("alerts", "silence", "-m", "component"): "is not label=value",
        ("alerts", "silence", "-m", "component=~("): "missing ), unterminated subpattern",
        ("alerts", "silence", "-m", "a=b", "--for", "soon"): "is not a duration",
        ("alerts", "expire", "abc"): "no silence abc in force",
        ("alerts", "silence", "-m", "component=~a.*", "-m", "component!=abc"): "matched twice",
        ("alerts", "silence", "-m", "a=b", "--for", "0"): "is not a duration",
    }
    for args, complaint in cases.items():
        result = subprocess.run([*PIPEPULSE, *args], env=env, capture_output=True, text=True, timeout=60)
        assert result.returncode != 0 and complaint in result.stderr, (args, result.stderr)
