"""Control settings a component obeys: read from `{prefix}:control:{component}`, checked again, cached.

The optimizer writes one `ControlSetting` (JSON) per setting. A component reads
them through a ControlClient and uses its default whenever a value is missing
or expired; values that are malformed, out of bounds, meant for another
component or older than the one in use are ignored and counted. Like the
emitters, the client never raises into its host on a Redis failure: it keeps
serving what it has until that expires.

>>> control = ControlClient("extractor", {"concurrency": 2}, redis_url, emitter=em).start()
>>> workers = control.get("concurrency")  # a dict lookup: call it as often as you like
>>> control.close()
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections import Counter
from dataclasses import dataclass
from typing import Callable, Final, Mapping

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from schemas import DEFAULT_PREFIX, Names
from schemas.control import SETTINGS, ControlError, ControlSetting, decode
from schemas.events import Scalar

from emitters.config import DEFAULT_REDIS_URL
from emitters.emitter import Emitter
from emitters.errors import ConfigError

log = logging.getLogger("pipepulse.control")

REJECT_REASONS: Final = ("malformed", "out_of_range", "expired", "stale_version", "wrong_component")
# A refresh waits at most this long for Redis, so one stuck read delays the next by about one interval.
SOCKET_TIMEOUT_S: Final = 1.0
# Rejected values remembered so that each is counted once; the cap bounds memory against a writer gone wrong.
MAX_REMEMBERED_REJECTIONS: Final = 1024


@dataclass(frozen=True, slots=True, kw_only=True)
class ControlStats:
    """Counts since the client was made; each rejected value is counted once per (setting, version, reason)."""

    refreshes_total: int
    refresh_errors_total: int
    changes_total: int
    callback_errors_total: int
    rejected_total: Mapping[str, int]


@dataclass(frozen=True, slots=True)
class _InUse:
    value: int
    version: int | None  # None: the default, set by nobody
    expires_at_s: float


class ControlClient:
    """The settings named in `defaults`, as last read from Redis; `get` never does I/O and never fails.

    `bounds` may narrow a setting's spec bounds; `client` (fakeredis in tests) replaces `redis_url` and stays the caller's.
    """

    def __init__(
        self,
        component: str,
        defaults: Mapping[str, int],
        redis_url: str | None = None,
        *,
        prefix: str = DEFAULT_PREFIX,
        bounds: Mapping[str, tuple[int, int]] | None = None,
        refresh_interval_s: float = 1.0,
        on_change: Callable[[str, int, int], None] | None = None,
        emitter: Emitter | None = None,
        clock: Callable[[], float] = time.time,
        client: redis.Redis | None = None,
    ) -> None:
        if not refresh_interval_s > 0:
            raise ConfigError(f"refresh_interval_s must be positive, got {refresh_interval_s}")
        self.component = component
        self.refresh_interval_s = refresh_interval_s
        self._bounds = _check_settings(defaults, bounds or {})
        self._defaults = dict(defaults)
        self._key = Names(prefix).control(component)
        self._on_change = on_change
        self._emitter = emitter
        self._clock = clock
        self._owns_client = client is None
        self._client = client if client is not None else _connect(redis_url or DEFAULT_REDIS_URL)
        self._in_use = {name: _InUse(value, None, math.inf) for name, value in defaults.items()}
        self._values = dict(defaults)  # what get() reads: replaced per key, never resized after this
        self._counted: dict[tuple[str, object, str], None] = {}  # (setting, version, reason) already counted, oldest first
        self._rejected: Counter[str] = Counter()
        self._refreshes = self._refresh_errors = self._changes = self._callback_errors = 0
        self._failing = False
        self._lock = threading.RLock()  # refreshes run one at a time; an on_change callback may call refresh
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- reading -----------------------------------------------------------

    def get(self, setting: str) -> int:
        """The value in use: the last valid one read, or the default."""
        try:
            return self._values[setting]
        except KeyError:
            raise ConfigError(f"{setting!r} is not a setting of this client (known: {', '.join(self._values)})") from None

    def values(self) -> dict[str, int]:
        return dict(self._values)

    def stats(self) -> ControlStats:
        with self._lock:
            return ControlStats(
                refreshes_total=self._refreshes,
                refresh_errors_total=self._refresh_errors,
                changes_total=self._changes,
                callback_errors_total=self._callback_errors,
                rejected_total=dict(self._rejected),
            )

    # -- refreshing --------------------------------------------------------

    def refresh(self) -> bool:
        """Read the control hash once and apply what is valid; False (counted, logged once) if Redis failed."""
        with self._lock:
            self._refreshes += 1
            try:
                stored = self._client.hgetall(self._key)
            except (redis.RedisError, OSError) as exc:
                self._refresh_errors += 1
                if not self._failing:
                    self._failing = True
                    log.warning("reading control settings %s failed, keeping the values in use until they expire: %s", self._key, exc)
                now = self._clock()
                for setting in self._defaults:
                    self._use(setting, self._unexpired(self._in_use[setting], setting, now))
                return False
            if self._failing:
                self._failing = False
                log.info("reading control settings %s works again", self._key)
            fields = {_text(name): raw for name, raw in stored.items()}
            now = self._clock()
            for setting in self._defaults:
                self._use(setting, self._judge(setting, fields.get(setting), now))
            return True

    def _judge(self, setting: str, raw: bytes | str | None, now: float) -> _InUse:
        """What to use for `setting` given its stored field: the new record, the default, or what is in use."""
        current = self._in_use[setting]
        if raw is None:  # deleted: back to the default
            return self._default(setting)
        try:
            record = decode(ControlSetting, raw)
        except ControlError:
            self._reject(setting, ("unreadable", hash(raw)), _decode_reason(raw), shown=str(raw)[:200])
            return self._unexpired(current, setting, now)
        low, high = self._bounds[setting]
        if record.setting != setting:
            reason = "malformed"
        elif record.component != self.component:
            reason = "wrong_component"
        elif not low <= record.value <= high:
            reason = "out_of_range"
        elif current.version is not None and record.version < current.version:
            reason = "stale_version"
        elif record.expires_at_s <= now:
            self._reject(setting, record.version, "expired")
            return self._default(setting)
        else:
            return _InUse(record.value, record.version, record.expires_at_s)
        self._reject(setting, record.version, reason)
        return self._unexpired(current, setting, now)

    def _unexpired(self, in_use: _InUse, setting: str, now: float) -> _InUse:
        if in_use.expires_at_s <= now:
            self._reject(setting, in_use.version, "expired")
            return self._default(setting)
        return in_use

    def _default(self, setting: str) -> _InUse:
        return _InUse(self._defaults[setting], None, math.inf)

    def _reject(self, setting: str, version: object, reason: str, shown: str = "") -> None:
        key = (setting, version, reason)
        if key in self._counted:
            return
        self._counted[key] = None
        if len(self._counted) > MAX_REMEMBERED_REJECTIONS:
            del self._counted[next(iter(self._counted))]
        self._rejected[reason] += 1
        log.warning("ignoring control setting %s of %s (%s): %s", setting, self.component, reason, shown or f"version {version}")

    def _use(self, setting: str, new: _InUse) -> None:
        old = self._in_use[setting]
        self._in_use[setting] = new
        if new.value == old.value:
            return
        self._values[setting] = new.value
        self._changes += 1
        log.info("%s now uses %s=%d (was %d, version %s)", self.component, setting, new.value, old.value, new.version)
        if self._on_change is not None:
            try:
                self._on_change(setting, old.value, new.value)
            except Exception:  # the host's callback must not stop the refreshes
                self._callback_errors += 1
                log.exception("on_change callback for %s=%d failed", setting, new.value)
        if self._emitter is not None:
            self._emitter.lifecycle("configured", {setting: new.value, f"{setting}_version": new.version})

    # -- the background thread ---------------------------------------------

    def start(self) -> ControlClient:
        """Read once now, report every value in use ("configured"), then refresh every `refresh_interval_s`."""
        if self._thread is not None:
            return self
        self.refresh()
        if self._emitter is not None:
            config: dict[str, Scalar] = {}
            for setting, in_use in self._in_use.items():
                config[setting] = in_use.value
                config[f"{setting}_version"] = in_use.version
            self._emitter.lifecycle("configured", config)
        self._thread = threading.Thread(target=self._run, name=f"pipepulse-control-{self.component}", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.refresh_interval_s):
            try:
                self.refresh()
            except Exception:  # a bug here must not end the refreshes silently
                log.exception("refreshing control settings of %s failed", self.component)

    def close(self, timeout_s: float = 2.0) -> None:
        """Stop the thread and close the connection this client opened. Idempotent."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
        if self._owns_client:
            self._client.close()

    def __enter__(self) -> ControlClient:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


def _check_settings(defaults: Mapping[str, int], bounds: Mapping[str, tuple[int, int]]) -> dict[str, tuple[int, int]]:
    """Each setting's effective bounds; unknown settings and defaults out of bounds are programmer errors."""
    unknown = (defaults.keys() | bounds.keys()) - SETTINGS.keys()
    if unknown:
        raise ConfigError(f"unknown control settings {sorted(unknown)} (known: {', '.join(SETTINGS)})")
    if bounds.keys() - defaults.keys():
        raise ConfigError(f"bounds given for settings without a default: {sorted(bounds.keys() - defaults.keys())}")
    effective: dict[str, tuple[int, int]] = {}
    for name, default in defaults.items():
        spec = SETTINGS[name]
        low, high = bounds.get(name, (spec.minimum, spec.maximum))
        if not spec.minimum <= low <= high <= spec.maximum:
            raise ConfigError(f"bounds of {name} must narrow {spec.minimum}..{spec.maximum}, got {low}..{high}")
        if type(default) is not int or not low <= default <= high:
            raise ConfigError(f"default {name}={default!r} is outside {low}..{high}")
        effective[name] = (low, high)
    return effective


def _decode_reason(raw: bytes | str) -> str:
    """`out_of_range` for a well-formed record whose value is outside the spec's bounds, else `malformed`."""
    try:
        body = json.loads(raw)
    except ValueError:
        return "malformed"
    if not isinstance(body, dict) or body.get("v") != ControlSetting.VERSION:
        return "malformed"
    setting, value = body.get("setting"), body.get("value")
    spec = SETTINGS.get(setting) if isinstance(setting, str) else None
    if spec is not None and type(value) is int and not spec.minimum <= value <= spec.maximum:
        return "out_of_range"
    return "malformed"


def _text(name: bytes | str) -> str:
    return name.decode("utf-8", "replace") if isinstance(name, bytes) else name


def _connect(redis_url: str) -> redis.Redis:
    try:
        return redis.Redis.from_url(redis_url, socket_timeout=SOCKET_TIMEOUT_S, socket_connect_timeout=SOCKET_TIMEOUT_S, retry=Retry(NoBackoff(), 0))
    except ValueError as exc:
        raise ConfigError(f"redis_url {redis_url!r} is not a Redis URL: {exc}") from exc
