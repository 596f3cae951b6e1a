"""The dashboard in headless Chromium (Debian's package, driven by Playwright) over a running `pipepulse demo`.

CI installs Chromium and sets PIPEPULSE_BROWSER_TESTS=required; elsewhere, without Chromium, these tests skip.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import uuid
from typing import Any, Iterator

import pytest
import redis

from emitters import Emitter, EmitterConfig
from processors.embedded import EmbeddedServer, free_port

from tests.conftest import wait_until
from tests.emitters.helpers import DEMO_TREE
from tests.processors.test_cli import PIPEPULSE, env_for

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
if CHROMIUM is None and os.environ.get("PIPEPULSE_BROWSER_TESTS") == "required":
    raise RuntimeError("PIPEPULSE_BROWSER_TESTS=required but no chromium on PATH")
playwright = pytest.importorskip("playwright.sync_api") if CHROMIUM else None
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no chromium on PATH (CI installs Debian's chromium)")

TOKEN = "browser-test-token"
HOSTILE = ("<script>window.__pwned=1</script>", '"><img src=x onerror="window.__pwned=2">')


class Demo:
    def __init__(self, url: str, prefix: str, client: redis.Redis, server_url: str) -> None:
        self.url, self.prefix, self.client, self.server_url = url, prefix, client, server_url


@pytest.fixture(scope="module")
def demo(real_server: EmbeddedServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    prefix = f"b{uuid.uuid4().hex[:8]}"
    port = free_port()
    state = tmp_path_factory.mktemp("browser")
    env = env_for(state, PIPEPULSE_REDIS_URL=real_server.url, PIPEPULSE_PREFIX=prefix, PIPEPULSE_WEB_PORT=str(port), PIPEPULSE_WEB_TOKEN=TOKEN)
    log = (state / "demo.log").open("w")
    proc = subprocess.Popen([*PIPEPULSE, "demo", "--source", str(DEMO_TREE), "--churn-per-s", "5"], env=env, stdout=log, stderr=subprocess.STDOUT)
    client = redis.Redis.from_url(real_server.url)
    hostile = [Emitter(name, config=EmitterConfig(redis_url=real_server.url, prefix=prefix)) for name in HOSTILE]
    try:
        for emitter in hostile:
            for _ in range(60):
                emitter.record("parse", 1.0, ok=False, error_type="E")  # failing: an alert with the hostile name too
            emitter.flush()
        wait_until(lambda: client.hlen(f"{prefix}:latest:stats") >= 3 and client.hget(f"{prefix}:latest:health", "current"), timeout_s=60, what="snapshots from the demo")
        wait_until(lambda: client.hlen(f"{prefix}:latest:alerts") > 0, timeout_s=60, what="an active alert")
        yield Demo(f"http://127.0.0.1:{port}/", prefix, client, real_server.url)
    finally:
        for emitter in hostile:
            emitter.close()
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
        client.close()
        log.close()
        print((state / "demo.log").read_text()[-5000:])  # shown by pytest when a test of this module fails


@pytest.fixture
def browser_page(demo: Demo) -> Iterator[tuple[Any, list[str]]]:
    """A page in a context whose network stops at the dashboard, and the script errors it raised."""
    assert playwright is not None
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        context = browser.new_context(viewport={"width": 1400, "height": 1200})
        # The network is cut off: anything not from the dashboard itself is refused.
        context.route("**/*", lambda route: route.continue_() if route.request.url.startswith("http://127.0.0.1:") else route.abort())
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        yield page, errors
        browser.close()


def test_the_page_loads_offline_and_the_charts_render_with_the_demos_data(demo: Demo, browser_page: tuple[Any, list[str]]) -> None:
    page, errors = browser_page
    page.goto(demo.url)
    page.wait_for_selector("#health-chart .main-svg", timeout=30_000)
    page.wait_for_selector("#rate-chart .main-svg", timeout=30_000)

    def names() -> set[str]:
        return set(page.locator("#components tbody tr td:nth-child(2)").all_inner_texts())

    wait_until(lambda: {"file_watcher", "detector", "extractor"} <= names(), timeout_s=30, what="the demo's components in the table")
    assert page.locator("#health").inner_text() != "-"
    wait_until(lambda: "(host)" in page.locator("#resources tbody").inner_text(), timeout_s=30, what="the host's resources")
    assert errors == []


def test_a_live_update_arrives_within_seconds(demo: Demo, browser_page: tuple[Any, list[str]]) -> None:
    page, _ = browser_page
    page.goto(demo.url)
    first = wait_until(lambda: (text := page.locator("#updated").inner_text()).startswith("updated") and text, timeout_s=30, what="the first update")
    wait_until(lambda: page.locator("#updated").inner_text() != first, timeout_s=10, what="a live update")


def test_ack_needs_the_token(demo: Demo, browser_page: tuple[Any, list[str]]) -> None:
    page, _ = browser_page
    page.goto(demo.url)
    button = page.locator("#alerts tbody button").first
    button.wait_for(timeout=30_000)
    button.click()
    wait_until(lambda: page.locator("#action-result").inner_text().startswith("refused (403)"), what="the refusal")
    page.fill("#token", TOKEN)
    page.locator("#alerts tbody button").first.click()
    wait_until(lambda: page.locator("#action-result").inner_text() == "sent", what="the ack sent")


def test_hostile_names_render_as_text_and_run_nothing(demo: Demo, browser_page: tuple[Any, list[str]]) -> None:
    page, errors = browser_page
    page.goto(demo.url)
    wait_until(lambda: set(HOSTILE) <= set(page.locator("#components tbody tr td:nth-child(2)").all_inner_texts()), timeout_s=30, what="the hostile names, as text")
    assert page.evaluate("window.__pwned") is None
    assert page.locator("#components img").count() == 0 and page.locator("#components script").count() == 0
    assert errors == []


def test_nothing_outside_the_dashboard_was_fetched(demo: Demo, browser_page: tuple[Any, list[str]]) -> None:
    page, _ = browser_page
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    page.goto(demo.url)
    page.wait_for_selector("#health-chart .main-svg", timeout=30_000)
    assert requested and all(url.startswith(demo.url.rstrip("/")) for url in requested), [u for u in requested if not u.startswith(demo.url)]


def test_the_report_page_renders_its_charts_under_its_own_policy(demo: Demo, browser_page: tuple[Any, list[str]]) -> None:
    page, errors = browser_page
    violations: list[str] = []
    page.on("console", lambda message: violations.append(message.text) if "Content Security Policy" in message.text else None)
    wait_until(lambda: demo.client.xlen(f"{demo.prefix}:stats") > 0, timeout_s=30, what="a closed window")
    page.goto(demo.url + "report?since=1h")
    page.wait_for_selector("#charts .main-svg", timeout=30_000)
    assert errors == [] and violations == []
