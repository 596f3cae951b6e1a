"""The HTTP face of pipepulse (`pipepulse web`, started by `run` and `demo`): the JSON API, `/metrics`, live
updates as server-sent events, and the operator's changes (ack, silence, optimizer mode). Safe by default:
it binds to 127.0.0.1, refuses foreign Host headers (DNS rebinding), takes changes only by POST with the
token and a same-origin Origin, and sends a strict Content-Security-Policy with every response."""

from __future__ import annotations

import asyncio
import hmac
import json
import secrets
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Awaitable, Callable, Literal

import click
import plotly
import redis
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from schemas import views
from schemas.control import MODES
from schemas.events import AlertCommand
from schemas.names import Names

from processors import api, exposition
from processors import matchers as label_matchers
from processors.alerts_cli import CLI_COMPONENT, duration_s, send_command
from processors.contract import to_json
from processors.optimizer_cli import switch
from processors.report_cli import read_streams
from processors.report_html import page_policy, render_html
from processors.reporting import build_report, newest_window_end_s

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
TOKEN_HEADER = "X-Pipepulse-Token"
# plotly.js adds <style> elements, so styles may be inline; scripts may only come from this server.
CSP = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
SECURITY_HEADERS = {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer", "X-Frame-Options": "DENY", "Cache-Control": "no-store"}
DASHBOARD = Path(__file__).parent / "dashboard"
# Served from disk: the page, its script and style, and the plotly.js inside the plotly wheel (no CDN: it works offline).
STATIC = {
    "dashboard.js": DASHBOARD / "dashboard.js",
    "dashboard.css": DASHBOARD / "dashboard.css",
    "plotly.min.js": Path(plotly.__file__).parent / "package_data" / "plotly.min.js",
}
LIVE_INTERVAL_S = 1.0  # how often the live stream looks for new snapshots
MAX_RECENT = 1000


@dataclass(frozen=True, slots=True, kw_only=True)
class WebSettings:
    host: str = "127.0.0.1"
    port: int = 8765
    token: str  # needed for every change
    extra_hosts: tuple[str, ...] = ()  # further Host header values to accept (a name behind a proxy)
    kafka_url: str | None = None  # the Faust engine's broker: acks and silences go to its events topic

    @property
    def hosts(self) -> frozenset[str]:
        return frozenset({f"127.0.0.1:{self.port}", f"localhost:{self.port}", *self.extra_hosts})

    @property
    def origins(self) -> frozenset[str]:
        return frozenset(f"http://{host}" for host in self.hosts)


def make_app(client: redis.Redis, names: Names, settings: WebSettings, text_client: redis.Redis | None = None) -> web.Application:
    """`text_client` (decoding responses) reads the streams for reports; by default one like `client`."""
    texts = text_client or redis.Redis(connection_pool=redis.ConnectionPool(**{**client.connection_pool.connection_kwargs, "decode_responses": True}))
    app = web.Application(middlewares=[_guard(settings)])

    def read() -> dict[str, Any]:
        return api.overview(client, names)

    metrics = exposition.registry(read)

    async def overview(request: web.Request) -> web.Response:
        return _json(await asyncio.to_thread(read))

    async def prometheus(request: web.Request) -> web.Response:
        body = await asyncio.to_thread(generate_latest, metrics)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    def stream_of(short: str) -> Handler:
        async def handler(request: web.Request) -> web.Response:
            return _json(await asyncio.to_thread(api.recent, client, names, short, _count(request)))

        return handler

    async def live(request: web.Request) -> web.StreamResponse:
        """Server-sent events: the overview whenever the processors wrote a new snapshot."""
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", **SECURITY_HEADERS})
        await response.prepare(request)
        sent = ""
        while True:
            text = to_json(await asyncio.to_thread(read))
            if text != sent:
                await response.write(f"event: overview\ndata: {text}\n\n".encode())
                sent = text
            await asyncio.sleep(LIVE_INTERVAL_S)

    async def ack(request: web.Request) -> web.Response:
        body = await _body(request)
        fingerprint = request.match_info["fingerprint"]
        if not await asyncio.to_thread(client.hexists, names.latest("alerts"), fingerprint):
            raise web.HTTPNotFound(text="no such active alert")
        action: Literal["ack", "unack"] = "unack" if request.path.endswith("/unack") else "ack"
        command = AlertCommand(timestamp_s=time.time(), component=CLI_COMPONENT, action=action, target=fingerprint, by=_text(body, "by", "dashboard"), reason=_text(body, "reason", ""), expires_in_s=_seconds(body, "for_s", 3600.0))
        await asyncio.to_thread(send_command, client, names, command, settings.kafka_url)
        return _json({"sent": action, "fingerprint": fingerprint}, status=202)

    async def silence(request: web.Request) -> web.Response:
        body = await _body(request)
        given = body.get("matchers")
        if not isinstance(given, dict) or not given or label_matchers.parse(given) is None:
            raise web.HTTPBadRequest(text='matchers must be an object of label to "=v", "!=v", "=~re" or "!~re"')
        silence_id = uuid.uuid4().hex[:12]
        command = AlertCommand(timestamp_s=time.time(), component=CLI_COMPONENT, action="silence", target=silence_id, by=_text(body, "by", "dashboard"), reason=_text(body, "reason", ""), expires_in_s=_seconds(body, "for_s", 7200.0), matchers=given)
        await asyncio.to_thread(send_command, client, names, command, settings.kafka_url)
        return _json({"sent": "silence", "silence_id": silence_id}, status=202)

    async def optimizer_mode(request: web.Request) -> web.Response:
        body = await _body(request)
        mode = _text(body, "mode", "")
        if mode not in MODES:
            raise web.HTTPBadRequest(text=f"mode must be one of {', '.join(MODES)}")
        await asyncio.to_thread(switch, client, names, mode, _text(body, "by", "dashboard"), _text(body, "reason", ""))
        return _json({"sent": mode}, status=202)

    def integration(view: Callable[[dict[str, Any]], Any], history: int) -> Handler:
        """The integration vocabulary's views (schemas.views), the same the client-side PerformanceIntegrationService gives."""

        async def handler(request: web.Request) -> web.Response:
            return _json(view(await asyncio.to_thread(views.read, client, names, history)))

        return handler

    app.router.add_get("/metrics", prometheus)
    app.router.add_get("/api/overview", overview)
    app.router.add_get("/api/dashboard", integration(views.dashboard_data, 60))
    app.router.add_get("/api/health_status", integration(views.health_status, 0))
    async def components(request: web.Request) -> web.Response:
        return _json(await asyncio.to_thread(views.registry, client, names))

    app.router.add_get("/api/components", components)
    for short in ("alerts", "health", "stats", "forecasts", "recommendations", "actions"):
        app.router.add_get(f"/api/{short}", stream_of(short))
    async def forecasts(request: web.Request) -> web.Response:
        return _json(await asyncio.to_thread(api.latest_forecasts, client, names))

    async def static(request: web.Request) -> web.FileResponse:
        return web.FileResponse(STATIC[request.match_info["name"]])

    async def page(request: web.Request) -> web.FileResponse:
        return web.FileResponse(DASHBOARD / "index.html")

    async def period_report(request: web.Request) -> web.Response:
        try:
            since_s = duration_s(request.query.get("since", "24h"))
        except click.BadParameter as exc:
            raise web.HTTPBadRequest(text=str(exc)) from exc
        entries = await asyncio.to_thread(read_streams, texts, names, False)
        until_s = newest_window_end_s(entries)
        if until_s is None:
            raise web.HTTPNotFound(text="no statistics yet: nothing to report")
        document = await asyncio.to_thread(build_report, entries, prefix=names.prefix, since_s=since_s, until_s=until_s)
        if request.path.startswith("/api/"):
            return _json(document)
        page = await asyncio.to_thread(render_html, document)
        return web.Response(text=page, content_type="text/html", headers={"Content-Security-Policy": page_policy()})

    app.router.add_get("/report", period_report)
    app.router.add_get("/api/report", period_report)
    async def no_icon(request: web.Request) -> web.Response:
        return web.Response(status=204)  # browsers ask for one; an empty answer keeps their consoles clean

    app.router.add_get("/favicon.ico", no_icon)
    app.router.add_get("/", page)
    app.router.add_get("/static/{name:(dashboard\\.js|dashboard\\.css|plotly\\.min\\.js)}", static)
    app.router.add_get("/api/forecasts/latest", forecasts)
    app.router.add_get("/api/live", live)
    app.router.add_post("/api/alerts/{fingerprint}/ack", ack)
    app.router.add_post("/api/alerts/{fingerprint}/unack", ack)
    app.router.add_post("/api/silences", silence)
    app.router.add_post("/api/optimizer/mode", optimizer_mode)
    return app


def _guard(settings: WebSettings) -> Any:
    @web.middleware
    async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.headers.get("Host") not in settings.hosts:
            return _refused("foreign Host header (DNS rebinding protection)")
        if request.method not in ("GET", "HEAD"):
            token = request.headers.get(TOKEN_HEADER, "")
            if not settings.token or not hmac.compare_digest(token.encode(), settings.token.encode()):  # no token set: no changes at all
                return _refused(f"a change needs the {TOKEN_HEADER} token")
            if request.headers.get("Origin") not in settings.origins:
                return _refused("a change must come from this dashboard's own origin")
        try:
            response = await handler(request)
        except web.HTTPException as refusal:  # errors and unknown paths get the same headers as any answer
            response = refusal
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        return response

    return guard


def _refused(why: str) -> web.Response:
    return web.Response(status=403, text=why, headers=SECURITY_HEADERS)


def _json(value: Any, status: int = 200) -> web.Response:
    return web.Response(text=to_json(value), status=status, content_type="application/json")


def _count(request: web.Request) -> int:
    try:
        return max(1, min(MAX_RECENT, int(request.query.get("count", "100"))))
    except ValueError as exc:
        raise web.HTTPBadRequest(text="count must be an integer") from exc


async def _body(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except json.JSONDecodeError as exc:
        raise web.HTTPBadRequest(text="the body must be a JSON object") from exc
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(text="the body must be a JSON object")
    return body


def _text(body: dict[str, Any], key: str, default: str) -> str:
    value = body.get(key, default)
    if not isinstance(value, str) or len(value) > 1000:
        raise web.HTTPBadRequest(text=f"{key} must be a string of at most 1000 characters")
    return value


def _seconds(body: dict[str, Any], key: str, default: float) -> float:
    value = body.get(key, default)
    if type(value) not in (int, float) or not 0 < value <= 30 * 86400:
        raise web.HTTPBadRequest(text=f"{key} must be a number of seconds up to 30 days")
    return float(value)


def token_for(state_dir: Path, given: str | None) -> tuple[str, Path | None]:
    """The given token, else the one kept (0600) in the state directory, made on first use."""
    if given:
        return given, None
    path = state_dir / "web.token"
    kept = path.read_text().strip() if path.exists() else ""
    if not kept:  # none yet, or emptied to rotate it: a new one, written whole before anyone reads it
        state_dir.mkdir(parents=True, exist_ok=True)
        kept = secrets.token_urlsafe(24)
        fresh = path.with_suffix(f".{secrets.token_hex(4)}")
        fresh.touch(mode=0o600)
        fresh.write_text(kept)
        fresh.replace(path)
    return kept, path


def serve(client: redis.Redis, names: Names, settings: WebSettings) -> None:
    """Until SIGTERM or Ctrl-C."""
    # Live streams never end by themselves: give them a second to finish, not aiohttp's default minute.
    web.run_app(make_app(client, names, settings), host=settings.host, port=settings.port, print=None, access_log=None, shutdown_timeout=1.0)
