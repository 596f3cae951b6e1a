"""The alert subscriber, the webhook forwarder and the forwarding command, against the real embedded server
and a real local HTTP receiver."""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
import redis

from emitters.alert_sinks import EVENT_ID_HEADER, ZERO_TIME, LoggingSink, WebhookForwarder, alertmanager_payload, rfc3339
from emitters.alerts import AlertSubscriber
from emitters.errors import ConfigError, WebhookError
from processors.embedded import EmbeddedServer
from schemas.alerts import AlertEvent, fingerprint
from schemas.names import Names

from tests.conftest import wait_until

ROOT = Path(__file__).parent.parent.parent
AT_S = 1_700_000_000.0
STATES = {"firing": "firing", "resolved": "resolved", "pending": "pending", "dropped": "inactive", "flapping": "flapping"}
RFC3339_MS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def alert(event_id: str, transition: str = "firing", **overrides: Any) -> AlertEvent:
    labels = overrides.pop("labels", {"component": "parser"})
    rule = overrides.pop("rule", "HighErrorRate")
    values: dict[str, Any] = {
        "event_id": event_id,
        "fingerprint": fingerprint(rule, labels),
        "rule": rule,
        "labels": labels,
        "severity": "warning",
        "state": STATES.get(transition, "firing"),
        "transition": transition,
        "value": 0.12,
        "threshold": 0.05,
        "message": "error rate 12 % above 5 %",
        "at_s": AT_S,
        "active_since_s": AT_S - 60,
        "fired_at_s": AT_S - 30,
        "resolved_at_s": AT_S if transition == "resolved" else None,
    }
    return AlertEvent(**{**values, **overrides})


# -- fixtures ---------------------------------------------------------------------


def xadd(client: redis.Redis, prefix: str, *events: AlertEvent | dict[str, str]) -> None:
    for event in events:
        fields = event.to_fields() if isinstance(event, AlertEvent) else event
        client.xadd(Names(prefix).stream("alerts"), fields)  # type: ignore[arg-type]


def read_without_acking(client: redis.Redis, prefix: str, group: str = "subscriber", consumer: str = "c1") -> int:
    """What a subscriber that died before calling back leaves behind: entries pending for its consumer name."""
    stream = Names(prefix).stream("alerts")
    try:
        client.xgroup_create(stream, Names(prefix).group(group), id="0", mkstream=True)
    except redis.ResponseError:
        pass  # BUSYGROUP
    response = client.xreadgroup(Names(prefix).group(group), consumer, {stream: ">"})
    return len(response[0][1]) if response else 0  # type: ignore[index]


def pending(client: redis.Redis, sub: AlertSubscriber) -> int:
    return int(client.xpending(sub.stream, sub.group)["pending"])


class Recorder:
    """A callback that records what it was given, and raises for the event ids told to fail (a count each, or forever)."""

    def __init__(self, fail: dict[str, int | None] | None = None) -> None:
        self.calls: list[str] = []
        self.delivered: list[AlertEvent] = []
        self._fail = dict(fail or {})

    def __call__(self, event: AlertEvent) -> None:
        self.calls.append(event.event_id)
        if event.event_id in self._fail:
            left = self._fail[event.event_id]
            if left is None or left > 0:
                if left is not None:
                    self._fail[event.event_id] = left - 1
                raise RuntimeError(f"callback failed on {event.event_id}")
        self.delivered.append(event)

    @property
    def ids(self) -> list[str]:
        return [e.event_id for e in self.delivered]


@pytest.fixture
def subscribers(real_server: EmbeddedServer, prefix: str) -> Iterator[Callable[..., AlertSubscriber]]:
    """Subscribers on this test's prefix with short back-offs; all closed at the end."""
    made: list[AlertSubscriber] = []

    def make(callback: Callable[[AlertEvent], None], **kwargs: Any) -> AlertSubscriber:
        settings: dict[str, Any] = {
            "prefix": prefix,
            "from_start": True,
            "block_ms": 50,
            "retry_backoff_initial_s": 0.01,
            "retry_backoff_max_s": 0.05,
            "reconnect_backoff_initial_s": 0.01,
            "reconnect_backoff_max_s": 0.05,
            **kwargs,
        }
        sub = AlertSubscriber(settings.pop("redis_url", real_server.url), callback, **settings)
        made.append(sub)
        return sub

    yield make
    for sub in made:
        sub.close()


def poll_until(sub: AlertSubscriber, condition: Callable[[], object], what: str) -> None:
    wait_until(lambda: (sub.poll(20), condition())[1], what=what)


def poll_rounds(sub: AlertSubscriber, rounds: int = 5) -> None:
    """Extra rounds after the expected outcome, so that anything wrongly left over would show."""
    for _ in range(rounds):
        sub.poll(20)


@dataclass
class Request:
    body: dict[str, Any]
    headers: dict[str, str]
    status: int


@dataclass
class Receiver:
    """A local webhook receiver: answers from `script` (status, headers) first, then 200; records every request."""

    url: str = ""
    script: list[tuple[int, dict[str, str]]] = field(default_factory=list)
    requests: list[Request] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def accepted_ids(self) -> list[str]:
        with self.lock:
            return [r.headers[EVENT_ID_HEADER] for r in self.requests if r.status == 200]

    def count(self) -> int:
        with self.lock:
            return len(self.requests)


class _Handler(BaseHTTPRequestHandler):
    server: _ReceiverServer

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        receiver = self.server.receiver
        with receiver.lock:
            status, headers = receiver.script.pop(0) if receiver.script else (200, {})
            receiver.requests.append(Request(body=body, headers=dict(self.headers.items()), status=status))
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _ReceiverServer(ThreadingHTTPServer):
    receiver: Receiver


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = _ReceiverServer(("127.0.0.1", 0), _Handler)
    server.receiver = Receiver(url=f"http://127.0.0.1:{server.server_address[1]}/hook")
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield server.receiver
    server.shutdown()
    server.server_close()
    thread.join(5)


def forwarder(url: str, **kwargs: Any) -> WebhookForwarder:
    return WebhookForwarder(url, **{"timeout_s": 2.0, "backoff_initial_s": 0.001, "backoff_max_s": 0.01, **kwargs})


# -- the subscriber -----------------------------------------------------------------------


def test_delivers_every_event_once_in_order_and_acks(client: redis.Redis, prefix: str, subscribers: Callable[..., AlertSubscriber]) -> None:
    events = [alert(f"e{i}") for i in range(25)]
    xadd(client, prefix, *events)
    got = Recorder()
    sub = subscribers(got, read_count=10)
    poll_until(sub, lambda: len(got.calls) >= 25, "25 deliveries")
    poll_rounds(sub)
    assert got.ids == [e.event_id for e in events]
    assert got.delivered == events  # the event arrives whole
    assert pending(client, sub) == 0
    assert sub.stats().delivered_total == 25


def test_a_new_group_starts_at_the_next_event_unless_from_start(client: redis.Redis, prefix: str, subscribers: Callable[..., AlertSubscriber]) -> None:
    xadd(client, prefix, alert("old"))
    late, early = Recorder(), Recorder()
    sub_late = subscribers(late, group="late", from_start=False)
    sub_early = subscribers(early, group="early", from_start=True)
    sub_late.poll(0)  # creates the group at "$"
    xadd(client, prefix, alert("new"))
    poll_until(sub_late, lambda: late.ids, "the new event")
    poll_until(sub_early, lambda: len(early.ids) == 2, "both events")
    poll_rounds(sub_late)
    assert late.ids == ["new"]
    assert early.ids == ["old", "new"]


def test_the_same_event_id_twice_in_the_stream_is_delivered_once(client: redis.Redis, prefix: str, subscribers: Callable[..., AlertSubscriber]) -> None:
    first, second = alert("a"), alert("b")
    xadd(client, prefix, first, second, first, alert("c"), second)  # the evaluator re-emitted after a restart
    got = Recorder()
    sub = subscribers(got)
    poll_until(sub, lambda: "c" in got.ids and sub.stats().duplicates_total == 2, "all five entries")
    poll_rounds(sub)
    assert got.ids == ["a", "b", "c"]
    assert pending(client, sub) == 0


def test_dedup_memory_is_bounded(client: redis.Redis, prefix: str, subscribers: Callable[..., AlertSubscriber]) -> None:
    xadd(client, prefix, alert("a"), alert("b"), alert("c"), alert("a"), alert("c"))
    got = Recorder()
    sub = subscribers(got, dedup_capacity=2)
    poll_until(sub, lambda: len(got.ids) + sub.stats().duplicates_total == 5, "five entries")
    assert got.ids == ["a", "b", "c", "a"]  # "a" was forgotten, "c" still remembered


def test_entries_read_but_never_acked_by_a_crashed_consumer_are_delivered_by_its_successor(
    client: redis.Redis, prefix: str, subscribers: Callable[..., AlertSubscriber]
) -> None:
    xadd(client, prefix, alert("a"), alert("b"))
    assert read_without_acking(client, prefix) == 2  # a predecessor read both and died before calling back
    xadd(client, prefix, alert("c"))
    got = Recorder()
    sub = subscribers(got)
    poll_until(sub, lambda: len(got.ids) == 3, "three deliveries")
    assert got.ids == ["a", "b", "c"]  # the pending ones first
    assert pending(client, sub) == 0


def test_a_failing_callback_is_retried_until_it_succeeds_and_later_events_wait(
    client: redis.Redis, prefix: str, subscribers: Callable[..., AlertSubscriber], caplog: pytest.LogCaptureFixture
) -> None:
    xadd(client, prefix, alert("a"), alert("b"), alert("c"))
    got = Recorder(fail={"b": 2})
    sub = subscribers(got, max_deliveries=5)
    with caplog.at_level(logging.WARNING, logger="pipepulse.alerts"):
        poll_until(sub, lambda: "c" in got.ids, "event c")
        poll_rounds(sub)
    assert got.calls == ["a", "b", "b", "b", "c"]  # in order: c waited for b
    assert got.ids == ["a", "b", "c"]
    assert pending(client, sub) == 0
    failures = [r for r in caplog.records if "retrying in" in r.getMessage()]
    assert len(failures) == 2 and all("event b" in r.getMessage() for r in failures)


def test_a_callback_that_keeps_failing_is_given_up_after_max_deliveries(
    client: redis.Redis, prefix: str, subscribers: Callable[..., AlertSubscriber], caplog: pytest.LogCaptureFixture
) -> None:
    xadd(client, prefix, alert("a"), alert("bad"), alert("c"), alert("d"))
    got = Recorder(fail={"bad": None})
    sub = subscribers(got, max_deliveries=3, read_count=100)
    with caplog.at_level(logging.WARNING, logger="pipepulse.alerts"):
        poll_until(sub, lambda: "d" in got.ids, "event d")
        poll_rounds(sub)
    assert got.calls == ["a", "bad", "bad", "bad", "c", "d"]
    assert pending(client, sub) == 0
    assert sub.stats().given_up_total == 1
    gave_up = [r for r in caplog.records if "gave up" in r.getMessage()]
    assert len(gave_up) == 1 and "event bad" in gave_up[0].getMessage() and gave_up[0].levelno == logging.ERROR
    assert sum("retrying in" in r.getMessage() for r in caplog.records) == 2  # one line per failure


def test_an_event_behind_a_failing_one_keeps_its_own_delivery_count(
    client: redis.Redis, prefix: str, subscribers: Callable[..., AlertSubscriber]
) -> None:
    # "b" and "c" are read in the same batch as "bad": the retries of "bad" must not use up theirs.
    xadd(client, prefix, alert("bad"), alert("b"), alert("c"))
    got = Recorder(fail={"bad": None, "b": 1})
    sub = subscribers(got, max_deliveries=3)
    poll_until(sub, lambda: "c" in got.ids, "event c")
    assert got.calls == ["bad", "bad", "bad", "b", "b", "c"]  # "b" was retried, not given up at its first failure


def test_a_restarted_subscriber_delivers_what_the_first_left_pending(
    client: redis.Redis, prefix: str, subscribers: Callable[..., AlertSubscriber]
) -> None:
    xadd(client, prefix, alert("a"), alert("b"))
    broken = Recorder(fail={"a": None, "b": None})
    first = subscribers(broken, group="pager", max_deliveries=5, retry_backoff_initial_s=60.0)
    poll_until(first, lambda: broken.calls, "a first attempt")
    first.close()
    assert pending(client, first) == 2 and broken.delivered == []
    healed = Recorder()
    second = subscribers(healed, group="pager")
    poll_until(second, lambda: len(healed.ids) == 2, "both events after the restart")
    assert healed.ids == ["a", "b"]
    assert pending(client, second) == 0


def test_malformed_and_vanished_entries_are_acked_and_skipped(
    client: redis.Redis, prefix: str, subscribers: Callable[..., AlertSubscriber], caplog: pytest.LogCaptureFixture
) -> None:
    stream = Names(prefix).stream("alerts")
    xadd(client, prefix, alert("gone"))
    read_without_acking(client, prefix)  # pending, then deleted from the stream
    client.xdel(stream, client.xrange(stream)[0][0])  # type: ignore[index,arg-type]
    bad_version = alert("v0").to_fields()
    bad_version["json"] = bad_version["json"].replace('"v":2', '"v":0')
    xadd(client, prefix, {"id": "x", "json": "not json"}, {"id": "y", "json": "5"}, {"other": "field"}, bad_version, alert("ok"))
    got = Recorder()
    sub = subscribers(got)
    with caplog.at_level(logging.WARNING, logger="pipepulse.alerts"):
        poll_until(sub, lambda: got.ids, "the good event")
        poll_rounds(sub)
    assert got.ids == ["ok"]
    assert sub.stats().malformed_total == 5
    assert pending(client, sub) == 0
    assert sum("malformed" in r.getMessage() for r in caplog.records) == 4


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        ({}, ["f", "p", "r", "quiet", "ack"]),
        ({"transitions": frozenset({"firing", "resolved"})}, ["f", "r", "quiet"]),
        ({"notify_only": True}, ["f", "p", "r", "ack"]),
        ({"transitions": frozenset({"firing", "resolved"}), "notify_only": True}, ["f", "r"]),
    ],
)
def test_filters(client: redis.Redis, prefix: str, subscribers: Callable[..., AlertSubscriber], settings: dict[str, Any], expected: list[str]) -> None:
    events = [alert("f"), alert("p", "pending"), alert("r", "resolved"), alert("quiet", notify=False), alert("ack", "acked")]
    xadd(client, prefix, *events, alert("end", "resolved"))
    got = Recorder()
    sub = subscribers(got, **settings)
    poll_until(sub, lambda: "end" in got.ids, "the last event")
    assert got.ids == [*expected, "end"]
    assert pending(client, sub) == 0  # filtered ones are acked too


def test_background_thread_delivers_and_stops(client: redis.Redis, prefix: str, subscribers: Callable[..., AlertSubscriber]) -> None:
    got = Recorder()
    sub = subscribers(got)
    with sub:
        xadd(client, prefix, alert("a"), alert("b"))
        wait_until(lambda: len(got.ids) == 2, what="two deliveries on the thread")
    assert sub.stop(1.0)
    assert not [t for t in threading.enumerate() if prefix in t.name]
    assert got.ids == ["a", "b"]


def test_survives_a_redis_outage_logging_once_each_way(
    server_factory: Callable[..., EmbeddedServer], prefix: str, subscribers: Callable[..., AlertSubscriber], caplog: pytest.LogCaptureFixture
) -> None:
    server = server_factory(appendonly=True)
    got = Recorder()
    sub = subscribers(got, redis_url=server.url, socket_timeout_s=0.5)
    c = redis.Redis.from_url(server.url)
    xadd(c, prefix, alert("before"))
    poll_until(sub, lambda: got.ids, "the first event")
    with caplog.at_level(logging.INFO, logger="pipepulse.alerts"):
        server.stop()
        wait_until(lambda: (sub.poll(20), sub.stats().connection_errors_total >= 3)[1], what="several failed rounds")
        server.start()
        xadd(c, prefix, alert("after"))
        poll_until(sub, lambda: len(got.ids) == 2, "the event after the outage")
    c.close()
    assert got.ids == ["before", "after"]
    messages = [r.getMessage() for r in caplog.records]
    assert sum("lost Redis" in m for m in messages) == 1
    assert sum("recovered" in m for m in messages) == 1


def test_an_event_whose_ack_was_lost_is_acked_on_redelivery_without_a_second_call(
    server_factory: Callable[..., EmbeddedServer], prefix: str, subscribers: Callable[..., AlertSubscriber]
) -> None:
    server = server_factory(appendonly=True)
    c = redis.Redis.from_url(server.url)
    xadd(c, prefix, alert("a"))
    calls: list[str] = []

    def crash_redis_during_the_callback(event: AlertEvent) -> None:
        calls.append(event.event_id)
        if len(calls) == 1:
            server.stop()  # the XACK that follows fails; the entry stays pending

    sub = subscribers(crash_redis_during_the_callback, redis_url=server.url, socket_timeout_s=0.5)
    poll_until(sub, lambda: calls and sub.stats().connection_errors_total, "the callback and the failed ack")
    server.start()
    xadd(c, prefix, alert("b"))
    poll_until(sub, lambda: "b" in calls, "event b")
    poll_rounds(sub)
    assert calls == ["a", "b"]
    assert sub.stats().duplicates_total == 1
    assert pending(c, sub) == 0
    c.close()


def test_a_group_deleted_under_a_running_subscriber_is_recreated(
    client: redis.Redis, prefix: str, subscribers: Callable[..., AlertSubscriber], caplog: pytest.LogCaptureFixture
) -> None:
    xadd(client, prefix, alert("a"))
    got = Recorder()
    sub = subscribers(got)
    poll_until(sub, lambda: got.ids, "event a")
    client.xgroup_destroy(sub.stream, sub.group)
    with caplog.at_level(logging.WARNING, logger="pipepulse.alerts"):
        poll_rounds(sub, 2)
    xadd(client, prefix, alert("b"))
    poll_until(sub, lambda: "b" in got.ids, "event b")
    assert got.ids == ["a", "b"]  # from_start re-reads "a"; the dedup memory folds it
    assert any("is gone" in r.getMessage() for r in caplog.records)
    assert pending(client, sub) == 0


def test_run_survives_an_unreachable_server_without_a_hot_loop(subscribers: Callable[..., AlertSubscriber]) -> None:
    sub = subscribers(Recorder(), redis_url="redis://127.0.0.1:1/0", reconnect_backoff_initial_s=0.05, reconnect_backoff_max_s=0.2)
    sub.start()
    wait_until(lambda: sub.stats().connection_errors_total >= 3, what="a few failed rounds")
    errors = sub.stats().connection_errors_total
    threading.Event().wait(0.5)  # measuring a rate needs an interval of time
    assert sub.stats().connection_errors_total - errors <= 5  # back-off of 0.2 s: a handful, not thousands
    assert sub.stop(2.0)


@pytest.mark.parametrize(
    "settings",
    [
        {"block_ms": 5000, "socket_timeout_s": 5.0},
        {"block_ms": 0},
        {"transitions": frozenset({"fired"})},
        {"max_deliveries": 0},
        {"prefix": "has space"},
        {"dedup_capacity": -1},
    ],
)
def test_bad_settings_raise_at_construction(settings: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        AlertSubscriber("redis://127.0.0.1:1/0", Recorder(), **settings)


# -- the webhook payload and forwarder -----------------------------------------------------


@pytest.mark.parametrize(
    ("event", "status", "ends_at"),
    [
        (alert("f"), "firing", ZERO_TIME),
        (alert("s", "severity_changed", severity="critical"), "firing", ZERO_TIME),
        (alert("r", "resolved", resolved_at_s=AT_S + 5), "resolved", rfc3339(AT_S + 5)),
        (alert("sf", "settled", state="firing"), "firing", ZERO_TIME),
        (alert("sr", "settled", state="resolved", resolved_at_s=AT_S + 7), "resolved", rfc3339(AT_S + 7)),
        (alert("re", "firing", resolved_at_s=AT_S - 100), "firing", ZERO_TIME),  # fired again after an earlier resolution
    ],
)
def test_alertmanager_payload_status(event: AlertEvent, status: str, ends_at: str) -> None:
    payload = alertmanager_payload(event)
    assert (payload["status"], payload["alerts"][0]["status"], payload["alerts"][0]["endsAt"]) == (status, status, ends_at)


@pytest.mark.parametrize(
    ("times", "starts_at"),
    [
        ({}, "2023-11-14T22:12:50.000Z"),  # fired_at_s
        ({"fired_at_s": None}, "2023-11-14T22:12:20.000Z"),  # active_since_s
        ({"fired_at_s": None, "active_since_s": None, "at_s": AT_S + 0.25}, "2023-11-14T22:13:20.250Z"),
    ],
)
def test_alertmanager_payload_starts_at(times: dict[str, Any], starts_at: str) -> None:
    assert alertmanager_payload(alert("e", **times))["alerts"][0]["startsAt"] == starts_at


def test_webhook_payload_schema(receiver: Receiver) -> None:
    event = alert("e1", labels={"component": "parser", "host": "h1"}, severity="error", value=0.2, threshold=0.15)
    forwarder(receiver.url, receiver="ops", external_url="http://pp.local")(event)
    (request,) = receiver.requests
    body = request.body
    assert set(body) == {"version", "groupKey", "truncatedAlerts", "status", "receiver", "groupLabels", "commonLabels", "commonAnnotations", "externalURL", "alerts"}
    assert body["version"] == "4" and body["status"] == "firing" and body["receiver"] == "ops" and body["truncatedAlerts"] == 0
    assert body["groupLabels"] == {"alertname": "HighErrorRate"}
    assert body["groupKey"] == '{}:{alertname="HighErrorRate"}'
    labels = {"component": "parser", "host": "h1", "alertname": "HighErrorRate", "severity": "error"}
    assert body["commonLabels"] == labels
    assert body["externalURL"] == "http://pp.local"
    annotations = body["commonAnnotations"]
    assert (annotations["summary"], annotations["description"]) == (event.message, event.message)
    assert (annotations["value"], annotations["threshold"]) == ("0.2", "0.15")
    (item,) = body["alerts"]
    assert set(item) == {"status", "labels", "annotations", "startsAt", "endsAt", "generatorURL", "fingerprint"}
    assert item["labels"] == labels and item["annotations"] == annotations
    assert item["fingerprint"] == fingerprint("HighErrorRate", {"component": "parser", "host": "h1"})
    assert RFC3339_MS.match(item["startsAt"]) and item["startsAt"] == rfc3339(event.fired_at_s or 0)
    assert item["endsAt"] == ZERO_TIME and item["status"] == "firing"
    assert request.headers[EVENT_ID_HEADER] == "e1"
    assert request.headers["Content-Type"] == "application/json"


def test_webhook_resolved_payload(receiver: Receiver) -> None:
    forwarder(receiver.url)(alert("r1", "resolved", resolved_at_s=AT_S + 1.5))
    (request,) = receiver.requests
    assert request.body["status"] == "resolved"
    assert request.body["alerts"][0]["endsAt"] == "2023-11-14T22:13:21.500Z"
    assert RFC3339_MS.match(request.body["alerts"][0]["endsAt"])


def test_webhook_retries_server_errors_until_accepted(receiver: Receiver) -> None:
    receiver.script = [(500, {}), (503, {}), (502, {})]
    fwd = forwarder(receiver.url)
    fwd(alert("e1"))
    assert [r.status for r in receiver.requests] == [500, 503, 502, 200]
    assert receiver.accepted_ids() == ["e1"]
    assert (fwd.posted_total, fwd.failed_attempts_total) == (1, 3)


def test_webhook_raises_when_every_attempt_fails(receiver: Receiver) -> None:
    receiver.script = [(500, {})] * 10
    with pytest.raises(WebhookError, match="e1"):
        forwarder(receiver.url, max_attempts=3)(alert("e1"))
    assert receiver.count() == 3


def test_webhook_honours_retry_after_on_429(receiver: Receiver) -> None:
    receiver.script = [(429, {"Retry-After": "3"}), (429, {})]
    slept: list[float] = []
    forwarder(receiver.url, backoff_max_s=30.0, sleep=slept.append)(alert("e1"))
    assert receiver.accepted_ids() == ["e1"] and receiver.count() == 3
    assert slept[0] >= 3.0 and slept[1] < 1.0


def test_webhook_does_not_retry_a_client_error(receiver: Receiver, caplog: pytest.LogCaptureFixture) -> None:
    receiver.script = [(400, {})]
    fwd = forwarder(receiver.url)
    with caplog.at_level(logging.ERROR, logger="pipepulse.alerts"):
        fwd(alert("e1"))  # no raise: retrying would get the same answer
    assert receiver.count() == 1
    assert fwd.rejected_total == 1
    assert any("HTTP 400" in r.getMessage() and "e1" in r.getMessage() for r in caplog.records)


def test_webhook_retries_when_nobody_listens() -> None:
    port = _closed_port()
    slept: list[float] = []
    with pytest.raises(WebhookError):
        forwarder(f"http://127.0.0.1:{port}/hook", max_attempts=4, backoff_initial_s=0.5, backoff_max_s=30.0, sleep=slept.append)(alert("e1"))
    assert len(slept) == 3
    assert 0.4 <= slept[0] <= 0.6 and 1.6 <= slept[2] <= 2.4  # exponential, with jitter


@pytest.mark.parametrize(
    "event",
    [alert("quiet", notify=False), alert("quiet", "resolved", notify=False), alert("ack", "acked"), alert("p", "pending"), alert("d", "dropped")],
)
def test_webhook_posts_only_events_that_page(receiver: Receiver, event: AlertEvent) -> None:
    fwd = forwarder(receiver.url)
    fwd(event)
    fwd(alert("loud"))
    assert receiver.accepted_ids() == ["loud"]


def test_end_to_end_each_event_reaches_the_receiver_exactly_once(
    client: redis.Redis, prefix: str, receiver: Receiver, subscribers: Callable[..., AlertSubscriber]
) -> None:
    transitions = ["firing", "severity_changed", "escalated", "resolved", "flapping"]
    events = [alert(f"e{i}", transitions[i % len(transitions)]) for i in range(30)]
    xadd(client, prefix, *events[:20], events[3], events[7], *events[20:])  # two re-emitted
    sub = subscribers(forwarder(receiver.url))
    with sub:
        wait_until(lambda: len(receiver.accepted_ids()) >= 30 and pending(client, sub) == 0, what="30 posted events")
    assert receiver.accepted_ids() == [e.event_id for e in events]


def test_end_to_end_at_least_once_through_receiver_failures(
    client: redis.Redis, prefix: str, receiver: Receiver, subscribers: Callable[..., AlertSubscriber]
) -> None:
    # The forwarder gives up after 2 attempts twice; the subscriber keeps the event pending and tries again.
    receiver.script = [(500, {})] * 4
    xadd(client, prefix, alert("e1"), alert("e2", "resolved"))
    sub = subscribers(forwarder(receiver.url, max_attempts=2), max_deliveries=5)
    poll_until(sub, lambda: len(receiver.accepted_ids()) == 2, "both events accepted")
    poll_rounds(sub)
    assert receiver.accepted_ids() == ["e1", "e2"]
    assert receiver.count() == 6
    assert pending(client, sub) == 0


def test_logging_sink_levels(caplog: pytest.LogCaptureFixture) -> None:
    sink = LoggingSink(logging.getLogger("test.alerts"))
    with caplog.at_level(logging.DEBUG, logger="test.alerts"):
        sink(alert("w", severity="warning"))
        sink(alert("c", severity="critical"))
        sink(alert("x", "escalated", severity="error"))
        sink(alert("r", "resolved", severity="critical"))
        sink(alert("a", "acked"))
    assert [r.levelno for r in caplog.records] == [logging.WARNING, logging.ERROR, logging.WARNING, logging.INFO, logging.INFO]
    line = caplog.records[0].getMessage()
    for part in ("HighErrorRate", "component=parser", "severity=warning", "state=firing", "value=0.12", "threshold=0.05", "error rate 12 %"):
        assert part in line


# -- the command --------------------------------------------------------------------------


def test_forward_command_end_to_end(real_server: EmbeddedServer, client: redis.Redis, prefix: str, receiver: Receiver) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIPEPULSE_")}
    env |= {"PIPEPULSE_PREFIX": prefix, "PIPEPULSE_ALERT_WEBHOOK_URL": receiver.url}  # the fallbacks
    command = [sys.executable, "-m", "emitters.alert_forward", "--redis-url", real_server.url, "--group", "hook", "--log"]
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        names = Names(prefix)
        wait_until(lambda: client.exists(names.stream("alerts")) and client.xinfo_groups(names.stream("alerts")), what="the forwarder's group")
        xadd(client, prefix, alert("e1"), alert("quiet", notify=False), alert("e2", "resolved"))
        wait_until(lambda: len(receiver.accepted_ids()) == 2, what="the webhook")
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, err
    assert receiver.accepted_ids() == ["e1", "e2"]
    assert receiver.requests[1].body["status"] == "resolved"
    assert "alert firing HighErrorRate" in err and "event=quiet" in err  # --log logs every event, paging or not
    groups = client.xinfo_groups(names.stream("alerts"))
    assert groups[0]["name"].decode() == names.group("hook") and groups[0]["pending"] == 0


def test_forward_command_without_a_destination_exits_2(prefix: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIPEPULSE_")}
    result = subprocess.run([sys.executable, "-m", "emitters.alert_forward", "--prefix", prefix], cwd=ROOT, env=env, capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert "PIPEPULSE_ALERT_WEBHOOK_URL" in result.stderr


def _closed_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
