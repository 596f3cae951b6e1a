"""The closed loop end to end, with real processes: `pipepulse demo` (server, monitor, optimizer, call-detection
pipeline), a throttling fault injected from the CLI, and the whole chain observed from outside through Redis:
the alert, the recommendation, the optimizer's change, the pipeline obeying, health recovering, the audit trail."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sysconfig
from pathlib import Path
from typing import Any

import redis

from schemas.codec import PAYLOAD_FIELD, decode_batch
from schemas.control import Action, ControlSetting, Recommendation, decode
from schemas.events import LifecycleEvent
from schemas.names import Names

from processors.embedded import EmbeddedServer

from tests.conftest import wait_until
from tests.processors.test_cli import PIPEPULSE, env_for

NAMES = Names("loop")
PACKAGES = ("email", "json", "logging", "http", "urllib", "xml", "concurrent", "importlib")  # about a hundred files of the standard library


def source_tree(tmp_path: Path) -> Path:
    root = tmp_path / "source"
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    for package in PACKAGES:
        shutil.copytree(stdlib / package, root / package, ignore=shutil.ignore_patterns("__pycache__", "test*"))
    return root


def entries(client: redis.Redis, short: str) -> list[dict[str, str]]:
    found: list[tuple[bytes, dict[bytes, bytes]]] = client.xrange(NAMES.stream(short))  # type: ignore[assignment]
    return [{k.decode(): v.decode() for k, v in fields.items()} for _, fields in found]


def extractor_settings(client: redis.Redis) -> list[dict[str, Any]]:
    """Every "configured" report of the extractor in the event log: what the pipeline says it now uses."""
    reports = []
    for _, fields in client.xrange(NAMES.events):  # type: ignore[union-attr]
        if PAYLOAD_FIELD in fields:
            batch = decode_batch(fields[PAYLOAD_FIELD]).batch
            if batch.component == "extractor":
                reports += [dict(e.config) for e in batch.events if isinstance(e, LifecycleEvent) and e.kind == "configured"]
    return reports


def extractor_actions(client: redis.Redis, *decisions: str) -> list[Action]:
    return [a for a in (decode(Action, e["json"]) for e in entries(client, "actions")) if a.component == "extractor" and a.decision in decisions]


def health(client: redis.Redis) -> list[dict[str, Any]]:
    return [json.loads(e["json"]) for e in entries(client, "health")]


def test_a_throttled_pipeline_is_noticed_advised_slowed_down_and_recovers(real_server: EmbeddedServer, tmp_path: Path) -> None:
    client = redis.Redis.from_url(real_server.url)
    env = env_for(tmp_path, PIPEPULSE_REDIS_URL=real_server.url, PIPEPULSE_PREFIX=NAMES.prefix)
    # A small cache (which the optimizer may grow meanwhile) keeps the extractor busy with misses.
    command = [*PIPEPULSE, "demo", "--source", str(source_tree(tmp_path)), "--concurrency", "2", "--churn-per-s", "40", "--cache-size", "16"]
    demo = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_until(lambda: any(r.get("concurrency") == 2 for r in extractor_settings(client)), timeout_s=30, what="the pipeline reporting concurrency 2")
        first = wait_until(lambda: [h for h in health(client) if h["components"].get("extractor", {}).get("status") == "healthy"], timeout_s=60, what="a healthy extractor")
        # The fault starts once the sliding window holds only normal traffic (as a fair detection benchmark does).
        wait_until(lambda: health(client)[-1]["at_s"] > first[0]["at_s"] + 12, timeout_s=60, what="a full window of normal traffic")
        fault = subprocess.run([*PIPEPULSE, "fault", "throttle", "--for", "10m"], env=env, capture_output=True, text=True, timeout=30)
        assert fault.returncode == 0, fault.stderr

        alert = wait_until(lambda: [a for a in map(lambda e: json.loads(e["json"]), entries(client, "alerts")) if a["rule"] == "max_error_rate" and a["transition"] == "firing"], timeout_s=30, what="the error-rate alert")
        advice = wait_until(lambda: [decode(Recommendation, e["json"]) for e in entries(client, "recommendations") if "lower_concurrency" in e["json"]], timeout_s=30, what="advice to lower concurrency")
        applied = wait_until(lambda: extractor_actions(client, "applied"), timeout_s=30, what="the optimizer's change")
        setting = decode(ControlSetting, client.hget(NAMES.control("extractor"), "concurrency"))  # type: ignore[arg-type]
        wait_until(lambda: any(r.get("concurrency") == 1 for r in extractor_settings(client)), timeout_s=30, what="the pipeline obeying")
        resolved = wait_until(lambda: [a for a in map(lambda e: json.loads(e["json"]), entries(client, "alerts")) if a["rule"] == "max_error_rate" and a["transition"] == "resolved"], timeout_s=60, what="the alert resolving")
        verified = wait_until(lambda: extractor_actions(client, "verified", "rolled_back"), timeout_s=90, what="the verification")
    finally:
        demo.send_signal(signal.SIGTERM)
        log, _ = demo.communicate(timeout=60)
        print(log[-6000:])  # shown by pytest when the test fails
    assert alert[0]["labels"]["component"] == "extractor"
    assert (advice[0].component, advice[0].current, advice[0].proposed) == ("extractor", 2, 1)
    assert (applied[0].component, applied[0].setting, applied[0].old_value, applied[0].new_value) == ("extractor", "concurrency", 2, 1)
    assert applied[0].recommendation_id == advice[0].recommendation_id
    assert (setting.value, setting.issued_by, setting.recommendation_id) == (1, "optimizer", advice[0].recommendation_id)
    assert alert[0]["at_s"] <= advice[0].issued_at_s <= applied[0].at_s <= resolved[0]["at_s"]
    assert verified[0].decision == "verified", verified[0].reason  # health recovered: the change is kept
    during = [h for h in health(client) if alert[0]["at_s"] <= h["at_s"] <= applied[0].at_s]
    after = [h for h in health(client) if h["at_s"] >= resolved[0]["at_s"]]
    assert min(h["components"]["extractor"]["score"] for h in during) < after[-1]["components"]["extractor"]["score"]
    assert after[-1]["components"]["extractor"]["status"] == "healthy", log[-3000:]
    client.close()
