"""The control client, against fakeredis and the real embedded server: what a component obeys and what it ignores."""

from __future__ import annotations

import json
import logging
import socket
from typing import Any

import fakeredis
import pytest
import redis

from emitters import ConfigError, ControlClient, Emitter
from emitters.control import REJECT_REASONS
from emitters.testing import MemorySink
from processors.embedded import EmbeddedServer
from schemas import LifecycleEvent, Names

from tests.conftest import wait_until

NOW_S = 1_000_000.0
KEY = Names().control("extractor")
DEFAULTS = {"concurrency": 2, "cache_size": 256}
BOUNDS = {"cache_size": (64, 4096)}  # narrower than the spec's 16..1,000,000


def stored(setting: str = "concurrency", value: Any = 4, version: int = 1, component: str = "extractor", expires_at_s: float = NOW_S + 60, **extra: Any) -> str:
    """A ControlSetting as the optimizer writes it, built by hand so that invalid ones can be written too."""
    body = {
        "component": component,
        "setting": setting,
        "value": value,
        "version": version,
        "issued_by": "optimizer",
        "recommendation_id": None,
        "issued_at_s": NOW_S - 1,
        "expires_at_s": expires_at_s,
        "v": 1,
        **extra,
    }
    return json.dumps(body)


class Clock:
    def __init__(self) -> None:
        self.now_s = NOW_S

    def __call__(self) -> float:
        return self.now_s


def make(client: redis.Redis, clock: Clock | None = None, **kwargs: Any) -> ControlClient:
    return ControlClient("extractor", DEFAULTS, bounds=BOUNDS, clock=clock or Clock(), client=client, **kwargs)


# Each case: the successive contents of one field (None: deleted), refreshed after each; then the value in use
# and the one rejection counted.
CASES = {
    "valid": ("concurrency", [stored(value=4)], 4, None),
    "above the spec maximum": ("concurrency", [stored(value=65)], 2, "out_of_range"),
    "below the narrower bound": ("cache_size", [stored("cache_size", value=32)], 256, "out_of_range"),
    "within the narrower bound": ("cache_size", [stored("cache_size", value=64)], 64, None),
    "expired": ("concurrency", [stored(value=4, expires_at_s=NOW_S)], 2, "expired"),
    "malformed json": ("concurrency", ['{"value": 4,'], 2, "malformed"),
    "unknown version": ("concurrency", [stored(value=4, v=2)], 2, "malformed"),
    "a boolean is no integer": ("concurrency", [stored(value=True)], 2, "malformed"),
    "unknown field": ("concurrency", [stored(value=4, colour="red")], 2, "malformed"),
    "another setting's record": ("concurrency", [stored("cache_size", value=512)], 2, "malformed"),
    "wrong component": ("concurrency", [stored(value=4, component="parser")], 2, "wrong_component"),
    "stale version after a newer one": ("concurrency", [stored(value=6, version=2), stored(value=3, version=1)], 6, "stale_version"),
    "a newer version replaces": ("concurrency", [stored(value=6, version=2), stored(value=3, version=3)], 3, None),
    "a bad value keeps the valid one in use": ("concurrency", [stored(value=6, version=2), stored(value=99, version=3)], 6, "out_of_range"),
    "deleted: back to the default": ("concurrency", [stored(value=4), None], 2, None),
    "a setting name that is not text": ("concurrency", ['{"v": 1, "setting": ["x"], "value": 4}'], 2, "malformed"),
    "a component that is not text": ("concurrency", [stored(value=4, component=["extractor"])], 2, "malformed"),
}


@pytest.mark.parametrize(("setting", "contents", "expected", "reason"), list(CASES.values()), ids=list(CASES))
def test_stored_field_gives_value_and_rejection(redis_client: redis.Redis, setting: str, contents: list[str | None], expected: int, reason: str | None) -> None:
    control = make(redis_client)
    for content in contents:
        if content is None:
            redis_client.hdel(KEY, setting)
        else:
            redis_client.hset(KEY, setting, content)
        assert control.refresh()
    for _ in range(3):  # counted once, not on every refresh
        assert control.refresh()
    assert control.get(setting) == expected
    assert control.values() == {**DEFAULTS, setting: expected}
    stats = control.stats()
    assert stats.rejected_total == ({reason: 1} if reason else {})
    assert reason is None or reason in REJECT_REASONS
    assert (stats.refreshes_total, stats.refresh_errors_total) == (len(contents) + 3, 0)
    control.close()


def test_each_bad_version_is_counted_once_even_when_values_alternate(redis_client: redis.Redis) -> None:
    control = make(redis_client)
    for version in (1, 2, 2, 3, 1, 2):
        redis_client.hset(KEY, "concurrency", stored(value=99, version=version))
        control.refresh()
    assert control.stats().rejected_total == {"out_of_range": 3}


def test_on_change_gets_old_and_new_and_configured_is_reported(redis_client: redis.Redis) -> None:
    sink = MemorySink()
    emitter = Emitter("extractor", sink=sink)
    changes: list[tuple[str, int, int]] = []
    control = make(redis_client, on_change=lambda *change: changes.append(change), emitter=emitter).start()
    redis_client.hset(KEY, "concurrency", stored(value=4, version=1))
    control.refresh()
    redis_client.hset(KEY, "concurrency", stored(value=4, version=2))  # same value: no change
    control.refresh()
    redis_client.hset(KEY, "concurrency", stored(value=8, version=3))
    control.refresh()
    redis_client.hdel(KEY, "concurrency")
    control.refresh()
    control.close()
    assert changes == [("concurrency", 2, 4), ("concurrency", 4, 8), ("concurrency", 8, 2)]
    assert control.stats().changes_total == 3
    assert emitter.flush(5)
    configured = [e.config for e in sink.events if isinstance(e, LifecycleEvent) and e.kind == "configured"]
    assert configured == [
        {"concurrency": 2, "concurrency_version": None, "cache_size": 256, "cache_size_version": None},
        {"concurrency": 4, "concurrency_version": 1},
        {"concurrency": 8, "concurrency_version": 3},
        {"concurrency": 2, "concurrency_version": None},
    ]
    emitter.close()


def test_a_raising_callback_is_counted_and_does_not_propagate(redis_client: redis.Redis) -> None:
    def broken(setting: str, old: int, new: int) -> None:
        raise RuntimeError("host bug")

    control = make(redis_client, on_change=broken)
    redis_client.hset(KEY, "concurrency", stored(value=4))
    assert control.refresh()
    assert control.get("concurrency") == 4
    assert control.stats().callback_errors_total == 1


def test_a_value_expires_on_the_clock_and_the_change_is_reported(redis_client: redis.Redis) -> None:
    clock = Clock()
    changes: list[tuple[str, int, int]] = []
    control = make(redis_client, clock, on_change=lambda *change: changes.append(change))
    redis_client.hset(KEY, "concurrency", stored(value=4, expires_at_s=NOW_S + 10))
    control.refresh()
    clock.now_s = NOW_S + 9.9
    control.refresh()
    assert control.get("concurrency") == 4
    clock.now_s = NOW_S + 10
    control.refresh()
    control.refresh()
    assert control.get("concurrency") == 2
    assert changes == [("concurrency", 2, 4), ("concurrency", 4, 2)]
    assert control.stats().rejected_total == {"expired": 1}


def test_an_outage_serves_cached_values_until_they_expire_and_is_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    server = fakeredis.FakeServer()
    client = fakeredis.FakeRedis(server=server)
    clock = Clock()
    control = make(client, clock)
    client.hset(KEY, "concurrency", stored(value=4, expires_at_s=NOW_S + 10))
    assert control.refresh()
    server.connected = False
    with caplog.at_level(logging.INFO, logger="pipepulse.control"):
        assert [control.refresh() for _ in range(3)] == [False] * 3
        assert control.get("concurrency") == 4
        clock.now_s = NOW_S + 11
        assert not control.refresh()
        assert control.get("concurrency") == 2
        server.connected = True
        assert control.refresh()
        assert control.refresh()
    failed = [r for r in caplog.records if "failed" in r.getMessage()]
    recovered = [r for r in caplog.records if "works again" in r.getMessage()]
    assert (len(failed), len(recovered)) == (1, 1)
    assert control.stats().refresh_errors_total == 4


def test_an_unreachable_server_gives_defaults_and_counts_errors() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed when the block ends: nothing listens there
    control = ControlClient("extractor", DEFAULTS, f"redis://127.0.0.1:{port}/0", refresh_interval_s=0.01).start()
    wait_until(lambda: control.stats().refresh_errors_total >= 3, what="refresh errors")
    assert control.values() == DEFAULTS
    control.close()
    control.close()  # idempotent
    stats = control.stats()
    assert stats.refresh_errors_total == stats.refreshes_total


def test_the_background_thread_picks_up_a_change(real_server: EmbeddedServer) -> None:
    client = redis.Redis.from_url(real_server.url)
    prefix = "control-thread"
    with ControlClient("extractor", DEFAULTS, real_server.url, prefix=prefix, refresh_interval_s=0.02) as control:
        assert control.get("concurrency") == 2
        client.hset(Names(prefix).control("extractor"), "concurrency", stored(value=5, expires_at_s=1e12))
        wait_until(lambda: control.get("concurrency") == 5, what="the new concurrency")
    client.close()


BAD_CONFIGS = {
    "unknown setting": ({"colour": 1}, None),
    "default above the spec": ({"concurrency": 65}, None),
    "default outside the narrower bounds": ({"cache_size": 32}, {"cache_size": (64, 128)}),
    "bounds wider than the spec": ({"cache_size": 256}, {"cache_size": (1, 512)}),
    "bounds without a default": ({"concurrency": 2}, {"cache_size": (64, 128)}),
    "a float default": ({"concurrency": 2.0}, None),
}


@pytest.mark.parametrize(("defaults", "bounds"), list(BAD_CONFIGS.values()), ids=list(BAD_CONFIGS))
def test_programmer_errors_raise_at_once(defaults: dict[str, int], bounds: dict[str, tuple[int, int]] | None) -> None:
    with pytest.raises(ConfigError):
        ControlClient("extractor", defaults, bounds=bounds, client=fakeredis.FakeRedis())


def test_an_unknown_setting_is_a_programmer_error_for_get() -> None:
    control = ControlClient("extractor", {"concurrency": 2}, client=fakeredis.FakeRedis())
    with pytest.raises(ConfigError, match="cache_size"):
        control.get("cache_size")
    with pytest.raises(ConfigError, match="refresh_interval_s"):
        ControlClient("extractor", {"concurrency": 2}, client=fakeredis.FakeRedis(), refresh_interval_s=0)
