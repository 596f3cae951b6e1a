"""End to end with real processes: faults injected into emitting processes make the right alerts fire,
the health drop and the forecast warn, and everything resolves when the faults end.

`pipepulse run` (the monitor, the ticker, the alert forwarder) against the embedded server, two
instrumented processes (tests/processors/faulty_main.py), and a local HTTP receiver for webhooks.
Windows of 2 s and staleness after 4 s keep it short; a user rules file lowers the processing-time
limit to 50 ms so that the slow fault is real sleeping, not a reported number.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Iterator

import pytest
import redis

from processors.embedded import EmbeddedServer

from tests.conftest import wait_until
from tests.processors.test_cli import PIPEPULSE, env_for

ROOT = Path(__file__).parent.parent.parent
RULES = """
[[rules]]
name = "max_processing_time"
kind = "threshold"
scope = "operation"
metric = "latency_p99_ms"
levels = { error = 50.0, critical = 5000.0 }
recovery = 40.0
min_count = 1
"""


class Receiver(BaseHTTPRequestHandler):
    payloads: list[dict[str, Any]] = []

    def do_POST(self) -> None:
        Receiver.payloads.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[str]:
    Receiver.payloads = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/alerts"
    server.shutdown()
    server.server_close()


class Pipeline:
    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.processes: dict[str, subprocess.Popen[str]] = {}

    def start(self, component: str) -> None:
        self.processes[component] = subprocess.Popen([sys.executable, "-m", "tests.processors.faulty_main", component], cwd=ROOT, env=self.env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def inject(self, component: str, fault: str) -> None:
        proc = self.processes[component]
        proc.stdin.write(fault + "\n")  # type: ignore[union-attr]
        proc.stdin.flush()  # type: ignore[union-attr]
        assert proc.stdout.readline().strip() == "ok"  # type: ignore[union-attr]

    def kill(self, component: str) -> None:
        proc = self.processes.pop(component)
        proc.kill()
        proc.communicate()

    def close(self) -> None:
        for proc in self.processes.values():
            proc.communicate(timeout=10)  # closes stdin: the process ends its work and flushes


def test_faults_fire_the_right_alerts_drop_the_health_warn_by_forecast_and_resolve(real_server: EmbeddedServer, tmp_path: Path, receiver: str) -> None:
    prefix = "faults"
    client = redis.Redis.from_url(real_server.url, decode_responses=True)
    client.flushall()
    rules = tmp_path / "rules.toml"
    rules.write_text(RULES)
    env = env_for(tmp_path, PIPEPULSE_REDIS_URL=real_server.url, PIPEPULSE_PREFIX=prefix, PIPEPULSE_WINDOW_S="2", PIPEPULSE_STALE_AFTER_S="4", PIPEPULSE_RULES_FILE=str(rules))
    run = subprocess.Popen([*PIPEPULSE, "run", "--alert-webhook", receiver, "--no-log-alerts"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    pipeline = Pipeline(env)

    def alert(rule: str, component: str) -> dict[str, Any] | None:
        for text in client.hvals(f"{prefix}:latest:alerts"):
            body = json.loads(text)
            if body["rule"] == rule and body["labels"].get("component") == component:
                return body  # type: ignore[no-any-return]
        return None

    def health() -> dict[str, Any]:
        text = client.hget(f"{prefix}:latest:health", "current")
        return json.loads(text) if text else {}

    def firing(rule: str, component: str, severity: str) -> bool:
        body = alert(rule, component)
        return body is not None and body["state"] == "firing" and body["severity"] == severity

    try:
        pipeline.start("parser")
        pipeline.start("extractor")
        wait_until(lambda: health().get("components", {}).keys() == {"parser", "extractor"} and health()["level"] == "excellent", timeout_s=30, what="a healthy baseline")

        pipeline.inject("parser", "errors")  # 50 % errors: past the 25 % critical level
        wait_until(lambda: firing("max_error_rate", "parser", "critical"), timeout_s=15, what="the error-rate alert, critical")
        wait_until(lambda: health().get("components", {}).get("parser", {}).get("status") == "critical" and health()["level"] != "excellent", what="the health to drop")
        pipeline.inject("parser", "normal")
        wait_until(lambda: alert("max_error_rate", "parser") is None, timeout_s=20, what="the error-rate alert to resolve")

        pipeline.inject("extractor", "slow")  # 80 ms operations against the 50 ms limit
        wait_until(lambda: firing("max_processing_time", "extractor", "error"), timeout_s=15, what="the processing-time alert")
        pipeline.inject("extractor", "normal")
        wait_until(lambda: alert("max_processing_time", "extractor") is None, timeout_s=20, what="the processing-time alert to resolve")

        pipeline.inject("parser", "memory")  # 40 MB a second: 2 GB within minutes
        wait_until(lambda: firing("memory_exhaustion_forecast", "parser", "critical"), timeout_s=40, what="the memory forecast to warn")
        forecast = json.loads(client.hget(f"{prefix}:latest:forecasts", "parser"))  # type: ignore[arg-type]
        crossing = [t for t in forecast["rss_bytes"]["thresholds"] if t["value"] == 2**31][0]
        assert crossing["in_s"] is not None and crossing["in_s"] <= 600
        pipeline.inject("parser", "normal")
        wait_until(lambda: alert("memory_exhaustion_forecast", "parser") is None, timeout_s=60, what="the memory forecast to clear")

        pipeline.kill("extractor")  # a component that stops: its process is gone
        wait_until(lambda: firing("component_absent", "extractor", "critical"), timeout_s=20, what="the absence alert")
        wait_until(lambda: health().get("components", {}).get("extractor", {}).get("status") == "unknown", what="the stale component to be unknown")
        pipeline.start("extractor")
        wait_until(lambda: alert("component_absent", "extractor") is None, timeout_s=20, what="the absence alert to resolve")

        try:
            wait_until(lambda: not client.hlen(f"{prefix}:latest:alerts"), timeout_s=60, what="no active alert left")
        except TimeoutError as exc:  # say which, so that a failure explains itself
            left = [(body["rule"], body["labels"], body["state"], body["message"]) for body in map(json.loads, client.hvals(f"{prefix}:latest:alerts"))]
            raise AssertionError(f"alerts still active: {left}") from exc
        wait_until(lambda: health()["level"] == "excellent", timeout_s=30, what="the health to recover")

        def delivered() -> bool:  # the forwarder is its own process: its posts trail the alert stream a little
            sent = {(p["status"], p["alerts"][0]["labels"]["alertname"]) for p in list(Receiver.payloads)}
            return {("firing", "max_error_rate"), ("resolved", "max_error_rate"), ("firing", "component_absent"), ("resolved", "component_absent")} <= sent

        wait_until(delivered, timeout_s=20, what="the webhooks of the error-rate and absence alerts, firing and resolved")
    finally:
        pipeline.close()
        run.send_signal(signal.SIGTERM)
        _, err = run.communicate(timeout=30)
        client.close()
    assert run.returncode == 0, err
