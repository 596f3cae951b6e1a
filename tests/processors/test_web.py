"""`pipepulse web` as users run it, over snapshots a real monitor derived: the API, /metrics, and its guards."""

from __future__ import annotations

import http.client
import json
import re
import subprocess
import uuid
from pathlib import Path
from typing import Any, Iterator

import pytest
import redis
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.parser import text_string_to_metric_families

from schemas.codec import PAYLOAD_FIELD, decode_batch
from schemas.events import AlertCommand
from schemas.names import Names

from processors import web
from processors.embedded import EmbeddedServer, free_port
from processors.runtime import write_outputs

from tests.conftest import wait_until
from tests.processors.alerting import run, spread
from tests.processors.helpers import T0, in_progress, op, system
from tests.processors.test_cli import PIPEPULSE, env_for

TOKEN = "test-token-123"


class Site:
    def __init__(self, port: int, names: Names) -> None:
        self.port, self.names = port, names
        self.host = f"127.0.0.1:{port}"

    def request(self, method: str, path: str, *, headers: dict[str, str] | None = None, body: Any = None) -> tuple[int, dict[str, str], str]:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            payload = None if body is None else json.dumps(body)
            connection.request(method, path, body=payload, headers={"Host": self.host, **(headers or {})})
            response = connection.getresponse()
            return response.status, dict(response.getheaders()), response.read().decode()
        finally:
            connection.close()


def faulty(second: int) -> dict[str, list[list[Any]]]:
    """A parser failing 30 % of the time, three calls in progress, with a process sample: a firing max_error_rate alert."""
    rows = spread(second, 40, lambda ts: op(ts, ok=int(ts * 40) % 10 >= 3, error_type="E", duration_ms=20.0))
    return {"parser": [*rows, in_progress(T0 + second + 0.5, "parse", 3), system(T0 + second + 0.9, rss=5_000_000, cpu=25.0)]}


@pytest.fixture
def site(real_server: EmbeddedServer, tmp_path: Path) -> Iterator[Site]:
    names = Names(f"w{uuid.uuid4().hex[:8]}")
    with redis.Redis.from_url(real_server.url) as client:
        write_outputs(client, names, run(faulty, 15))
    port = free_port()
    env = env_for(tmp_path, PIPEPULSE_REDIS_URL=real_server.url, PIPEPULSE_PREFIX=names.prefix, PIPEPULSE_WEB_TOKEN=TOKEN)
    proc = subprocess.Popen([*PIPEPULSE, "web", "--port", str(port)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    found = Site(port, names)

    def up() -> bool:
        try:
            return found.request("GET", "/api/overview")[0] == 200
        except OSError:
            return False

    try:
        wait_until(up, timeout_s=20, what="the web server")
        yield found
    finally:
        proc.terminate()
        proc.communicate(timeout=20)


def test_metrics_parse_and_carry_the_derived_figures(site: Site) -> None:
    status, headers, text = site.request("GET", "/metrics")
    assert status == 200 and headers["Content-Type"] == CONTENT_TYPE_LATEST
    families = {f.name: f for f in text_string_to_metric_families(text)}
    expected = {
        "pipepulse_health_score", "pipepulse_component_health_score", "pipepulse_operations_per_second", "pipepulse_error_ratio",
        "pipepulse_operation_duration_seconds", "pipepulse_cache_hit_ratio", "pipepulse_process_cpu_ratio", "pipepulse_process_resident_memory_bytes",
        "pipepulse_alerts_active", "pipepulse_processor_lag_entries", "pipepulse_optimizer_mode", "pipepulse_recommendations_active",
        "pipepulse_operations_in_progress",
    }  # fmt: skip
    assert expected <= families.keys()
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value for f in families.values() for s in f.samples}
    assert samples[("pipepulse_error_ratio", (("component", "parser"),))] == pytest.approx(0.3, abs=0.03)
    assert samples[("pipepulse_operation_duration_seconds", (("component", "parser"), ("quantile", "0.5")))] == pytest.approx(0.02, rel=0.02)
    assert samples[("pipepulse_process_resident_memory_bytes", (("component", "parser"), ("process", "100@h1")))] == 5_000_000
    assert samples[("pipepulse_alerts_active", (("severity", "critical"), ("state", "firing")))] >= 1
    assert samples[("pipepulse_operations_in_progress", (("component", "parser"),))] == 3
    assert 0 <= samples[("pipepulse_health_score", ())] < 100


def test_the_api_serves_the_snapshots(site: Site) -> None:
    status, headers, text = site.request("GET", "/api/overview")
    overview = json.loads(text)
    assert status == 200 and headers["Content-Type"].startswith("application/json")
    assert overview["components"]["parser"]["error_rate"] == pytest.approx(0.3, abs=0.03)
    assert {a["rule"] for a in overview["alerts"]} >= {"max_error_rate"}
    status, _, text = site.request("GET", "/api/health?count=3")
    assert status == 200 and 1 <= len(json.loads(text)) <= 3
    assert site.request("GET", "/api/alerts?count=x")[0] == 400


def test_the_integration_views_are_served_as_the_facade_reads_them(site: Site) -> None:
    dashboard = json.loads(site.request("GET", "/api/dashboard")[2])
    assert dashboard["component_health"] == {"parser": "critical"}  # 30 % errors: past the 25 % critical level
    assert dashboard["current_metrics"]["error_rate"] == pytest.approx(0.3, abs=0.03)
    assert dashboard["current_metrics"]["memory_usage_mb"] == pytest.approx(5_000_000 / 2**20)
    assert dashboard["charts"]["timestamps"] == [T0 + 10]  # the one window closed in 15 s
    assert dashboard["charts"]["operations_per_second"] == [40.0]
    overview = json.loads(site.request("GET", "/api/overview")[2])
    health = json.loads(site.request("GET", "/api/health_status")[2])
    assert health["overall_score"] == overview["health"]["score"] and health["components"]["parser"]["status"] == "critical"
    components = json.loads(site.request("GET", "/api/components")[2])
    assert components["parser"]["status"] == "active" and components["parser"]["processes"][0]["pid"] == 100


def test_a_foreign_host_is_refused_and_every_response_has_the_csp(site: Site) -> None:
    assert site.request("GET", "/api/overview", headers={"Host": "evil.example"})[0] == 403
    assert site.request("GET", "/metrics", headers={"Host": f"attacker.test:{site.port}"})[0] == 403
    _, headers, _ = site.request("GET", "/api/overview")
    assert "default-src 'self'" in headers["Content-Security-Policy"] and "frame-ancestors 'none'" in headers["Content-Security-Policy"]
    assert headers["X-Content-Type-Options"] == "nosniff"


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({}, 403),  # no token
        ({"X-Pipepulse-Token": "wrong", "Origin": "http://127.0.0.1:{port}"}, 403),
        ({"X-Pipepulse-Token": TOKEN, "Origin": "http://evil.example"}, 403),
        ({"X-Pipepulse-Token": TOKEN}, 403),  # no Origin
        ({"X-Pipepulse-Token": TOKEN, "Origin": "http://127.0.0.1:{port}"}, 202),
    ],
)
def test_a_change_needs_the_token_and_the_own_origin(site: Site, real_server: EmbeddedServer, headers: dict[str, str], status: int) -> None:
    overview = json.loads(site.request("GET", "/api/overview")[2])
    (fingerprint,) = [a["fingerprint"] for a in overview["alerts"] if a["rule"] == "max_error_rate"]
    sent = {k: v.format(port=site.port) for k, v in headers.items()}
    got, response_headers, text = site.request("POST", f"/api/alerts/{fingerprint}/ack", headers={**sent, "Content-Type": "application/json"}, body={"reason": "on it", "by": "alice"})
    assert got == status, text
    assert "Content-Security-Policy" in response_headers
    with redis.Redis.from_url(real_server.url) as client:
        entries: list[tuple[bytes, dict[bytes, bytes]]] = client.xrange(site.names.events)  # type: ignore[assignment]
    commands = [e for _, fields in entries for e in decode_batch(fields[PAYLOAD_FIELD]).batch.events if isinstance(e, AlertCommand)]
    assert [(c.action, c.target, c.by, c.reason) for c in commands] == ([("ack", fingerprint, "alice", "on it")] if status == 202 else [])


def test_the_optimizer_switch_is_a_change_too(site: Site, real_server: EmbeddedServer) -> None:
    origin = {"X-Pipepulse-Token": TOKEN, "Origin": f"http://{site.host}", "Content-Type": "application/json"}
    assert site.request("POST", "/api/optimizer/mode", headers=origin, body={"mode": "off"})[0] == 400
    assert site.request("POST", "/api/optimizer/mode", headers=origin, body={"mode": "disabled", "reason": "incident"})[0] == 202
    with redis.Redis.from_url(real_server.url) as client:
        (entry,) = client.xrange(site.names.stream("optimizer_commands"))  # type: ignore[misc]
    assert json.loads(entry[1][b"json"])["mode"] == "disabled"


def test_the_dashboard_page_and_its_scripts_are_served_locally(site: Site) -> None:
    status, headers, page = site.request("GET", "/")
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    sources = re.findall(r'(?:src|href)="([^"]+)"', page)
    assert sources and all(s.startswith("/static/") for s in sources)  # nothing from a CDN: it works offline
    for source in sources:
        got, served, body = site.request("GET", source)
        assert got == 200 and "Content-Security-Policy" in served, source
    assert len(site.request("GET", "/static/plotly.min.js")[2]) > 1_000_000  # the bundle from the plotly wheel
    assert site.request("GET", "/static/../web.py")[0] == 404
    assert "innerHTML" not in site.request("GET", "/static/dashboard.js")[2]  # names are rendered as text only
    forecasts = json.loads(site.request("GET", "/api/forecasts/latest")[2])
    assert isinstance(forecasts, dict)


def test_the_period_report_is_served_as_json_and_as_a_page_with_its_own_policy(site: Site) -> None:
    status, _, text = site.request("GET", "/api/report?since=1h")
    document = json.loads(text)
    assert status == 200 and document["metadata"]["prefix"] == site.names.prefix
    assert document["alerts"]["by_rule"]["max_error_rate"]
    status, headers, page = site.request("GET", "/report?since=1h")
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert headers["Content-Security-Policy"].startswith("default-src 'none'; script-src 'sha256-")  # the page's hashes, not 'self'
    assert site.request("GET", "/api/report?since=soon")[0] == 400


def test_a_silence_is_a_command_event_too(site: Site, real_server: EmbeddedServer) -> None:
    origin = {"X-Pipepulse-Token": TOKEN, "Origin": f"http://{site.host}", "Content-Type": "application/json"}
    assert site.request("POST", "/api/silences", headers=origin, body={"matchers": {"component": "=~(unclosed"}})[0] == 400
    assert site.request("POST", "/api/silences", headers={"Host": site.host}, body={"matchers": {"component": "=parser"}})[0] == 403
    status, _, text = site.request("POST", "/api/silences", headers=origin, body={"matchers": {"alertname": "=max_error_rate", "component": "=parser"}, "for_s": 600, "reason": "deploy"})
    assert status == 202, text
    with redis.Redis.from_url(real_server.url) as client:
        entries: list[tuple[bytes, dict[bytes, bytes]]] = client.xrange(site.names.events)  # type: ignore[assignment]
    (command,) = [e for _, fields in entries for e in decode_batch(fields[PAYLOAD_FIELD]).batch.events if isinstance(e, AlertCommand)]
    assert (command.action, command.target, dict(command.matchers), command.expires_in_s) == ("silence", json.loads(text)["silence_id"], {"alertname": "=max_error_rate", "component": "=parser"}, 600.0)


def test_errors_and_unknown_paths_carry_the_security_headers_too(site: Site) -> None:
    for path in ("/api/stats?count=x", "/nope"):
        status, headers, _ = site.request("GET", path)
        assert status in (400, 404) and "default-src 'self'" in headers["Content-Security-Policy"] and headers["X-Content-Type-Options"] == "nosniff", path


def test_an_emptied_token_file_is_replaced_never_used(tmp_path: Path) -> None:
    (tmp_path / "web.token").write_text("  \n")
    token, path = web.token_for(tmp_path, None)
    assert len(token) >= 24 and path is not None and path.read_text() == token
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    assert web.token_for(tmp_path, None)[0] == token  # kept


def test_the_address_to_bind_comes_from_the_environment_as_in_docker_compose(real_server: EmbeddedServer, tmp_path: Path) -> None:
    port = free_port()
    env = env_for(tmp_path, PIPEPULSE_REDIS_URL=real_server.url, PIPEPULSE_WEB_PORT=str(port), PIPEPULSE_WEB_HOST="127.0.0.2")  # another loopback address
    proc = subprocess.Popen([*PIPEPULSE, "web"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def status(address: str) -> int | None:
        connection = http.client.HTTPConnection(address, port, timeout=5)
        try:
            connection.request("GET", "/api/components", headers={"Host": f"127.0.0.1:{port}"})  # as a published port forwards it
            return connection.getresponse().status
        except OSError:
            return None
        finally:
            connection.close()

    try:
        wait_until(lambda: status("127.0.0.2") == 200, timeout_s=20, what="the web server on 127.0.0.2")
        assert status("127.0.0.1") is None  # bound to that address only
    finally:
        proc.terminate()
        proc.communicate(timeout=20)
