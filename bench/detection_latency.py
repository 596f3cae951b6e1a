"""Detection latency: from a fault injected in an emitting process to the firing alert, pipepulse against Prometheus.

    python bench/detection_latency.py [--trials 20] [--rate 200] [--quick] [--one-monitor]

Everything runs on this machine, on loopback, started and stopped by the bench
in temporary directories: the embedded server; `pipepulse run` (the monitor and
its 1 s ticker, default rules) as a subprocess; Prometheus (the `prometheus`
binary, e.g. Debian's package: `apt-get install -y prometheus`; not a test
dependency) with `scrape_interval: 1s`, `evaluation_interval: 1s` and the rule
`sum(rate(errors_total[10s])) / sum(rate(ops_total[10s])) > 0.05` (`for: 0s`),
the counterpart of pipepulse's `max_error_rate` (error rate over the last 10 s
above 5 %, `for_s` 0); and one emitting process ("parser") that performs
`--rate` operations/s with a 1 % error baseline, recording each one both with
the pipepulse Emitter and in prometheus_client counters (`ops_total`,
`errors_total`, labelled component="parser") that Prometheus scrapes.

Each trial, after a uniform random delay of 0-1 s (so the phases of the 1 s
ticks, scrapes and evaluations bias neither side), the bench tells the emitting
process to start a fault (50 % errors); that process notes the wall-clock time
of the first operation of the fault: the injection instant. Detection is the
wall-clock time at which the bench, in its own process, first sees the alert
firing: for pipepulse the receipt of the `max_error_rate` event with transition
"firing" on `{prefix}:alerts` (a thread blocked in XREAD, BLOCK 100); for
Prometheus the first `GET /api/v1/alerts` (polled every 20 ms) that shows
HighErrorRate "firing". The fault then ends; the bench waits until both have
resolved, and for another `--settle` seconds of normal traffic before the next
trial, so that every trial starts with both 10 s windows full of normal traffic
that both have evaluated (SEMANTICS.md, "Measuring detection fairly"); the
first trial waits `--warmup` seconds for the same reason.

pipepulse's alert policy marks an alert that changes between firing and
resolved 5 times within 10 minutes as "flapping", which replaces the firing
page; repeated trials on one alert would measure that policy, not detection.
So by default every trial gets a fresh monitor (a new prefix and a new
`pipepulse run`, started before the settle period, so its window fills with
normal traffic too); `--one-monitor` keeps one for all trials to show the
effect. Prometheus has no such policy and runs throughout.

The packages (processors, schemas, emitters) are copied at the start and every
process of the run imports the copy, so edits to the tree during a run cannot
mix code versions between trials. Before each trial the bench checks that the
monitor has committed new events and dead-lettered none, and stops with its
log otherwise: a monitor that is not processing is a broken run, not a miss.

Prints each trial's latencies (with their parts: for pipepulse the event time
`at_s` of the firing event, i.e. the stream time at which the monitor judged,
and the delivery to the reader; for Prometheus the evaluation that made the
alert active, `activeAt`, and the API poll), then p50, p99, max and mean for
both, the ratio pipepulse/prometheus, and whether pipepulse meets its target:
p99 <= 1 s + for (for = 0 s for max_error_rate). Load averages at the start and
end, and the CPU that anything other than this benchmark used during the run,
say how noisy the machine was.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from datetime import datetime
from multiprocessing.connection import Connection
from pathlib import Path
from types import FrameType
from typing import Any

import numpy as np
import psutil
import redis

from emitters.testing import wait_until
from processors.embedded import EmbeddedServer, ServerSettings, die_with_parent, free_port
from processors.runtime import committed_counters
from schemas.names import Names

REPO = Path(__file__).resolve().parent.parent
CODE_PACKAGES = ("processors", "schemas", "emitters")
CTX = multiprocessing.get_context("spawn")
COMPONENT = "parser"
RULE = "max_error_rate"
PROM_ALERT = "HighErrorRate"
BASELINE_ERROR_RATE = 0.01
FAULT_ERROR_RATE = 0.50
POLL_S = 0.02  # Prometheus alerts API
XREAD_BLOCK_MS = 100
TARGET_S = 1.0  # pipepulse p99 <= 1 s + for, and for = 0 s for max_error_rate
INSTALL_HINT = "install it with `apt-get install -y prometheus` (Debian/Ubuntu) or put a Prometheus release's binary on PATH"

PROMETHEUS_CONFIG = """\
global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files:
  - {rules}
scrape_configs:
  - job_name: parser
    static_configs:
      - targets: ["127.0.0.1:{port}"]
"""
PROMETHEUS_RULES = """\
groups:
  - name: detection
    rules:
      - alert: HighErrorRate
        expr: sum(rate(errors_total[10s])) / sum(rate(ops_total[10s])) > 0.05
        for: 0s
"""


# -- the emitting process ------------------------------------------------


def emit(url: str, rate: float, seed: int, conn: Connection) -> None:
    """One instrumented process: `rate` operations/s, each recorded by the pipepulse Emitter and in Prometheus counters.

    Commands on `conn`: ("prefix", p) switches the Emitter to prefix p (answers ("prefix", p));
    ("fault", True|False) starts or ends the fault (answers ("fault", on, time of the first operation under it));
    ("stop",) ends. Answers ("ready", metrics port, the Emitter's source file) once serving.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent stops it, also on Ctrl-C
    from prometheus_client import CollectorRegistry, Counter, start_http_server

    from emitters import Emitter, EmitterConfig

    registry = CollectorRegistry(auto_describe=True)
    ops = Counter("ops_total", "operations", ["component"], registry=registry).labels(component=COMPONENT)
    errors = Counter("errors_total", "failed operations", ["component"], registry=registry).labels(component=COMPONENT)
    server, _ = start_http_server(0, addr="127.0.0.1", registry=registry)
    rng = random.Random(seed)
    emitter: Emitter | None = None
    fault = False
    fault_started: float | None = None  # a fault was asked for; its first operation has not happened yet
    conn.send(("ready", server.server_port, sys.modules[Emitter.__module__].__file__))
    interval = 1.0 / rate
    next_op = time.perf_counter()
    try:
        while True:
            while conn.poll(max(0.0, next_op - time.perf_counter())):  # the pacing sleep; wakes at once for a command
                message = conn.recv()
                if message[0] == "stop":
                    return
                if message[0] == "prefix":
                    old, emitter = emitter, Emitter(COMPONENT, config=EmitterConfig(redis_url=url, prefix=message[1]))
                    if old is not None:
                        old.close()
                    conn.send(("prefix", message[1]))
                elif message[0] == "fault":
                    fault = bool(message[1])
                    fault_started = None
                    if not fault:
                        conn.send(("fault", False, time.time()))
            next_op += interval
            now = time.time()
            if fault and fault_started is None:
                fault_started = now
                conn.send(("fault", True, now))  # the injection instant: the first operation of the fault
            ok = rng.random() >= (FAULT_ERROR_RATE if fault else BASELINE_ERROR_RATE)
            if emitter is not None:
                emitter.record("parse", round(rng.lognormvariate(1.1, 0.5), 3), ok, error_type=None if ok else "ValueError")
            ops.inc()
            if not ok:
                errors.inc()
    except (EOFError, BrokenPipeError):
        pass  # the parent is gone
    finally:
        if emitter is not None:
            emitter.close(timeout_s=1.0)
        server.shutdown()


# -- subprocesses --------------------------------------------------------


def snapshot_code(into: Path) -> Path:
    """Copy the packages into `into`: every process of the run then uses the same code, even while the tree is edited."""
    for package in CODE_PACKAGES:
        shutil.copytree(REPO / package, into / package, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    check = subprocess.run(
        [sys.executable, "-c", "import processors.cli, processors.monitor, emitters, schemas; print(processors.__file__)"],
        cwd=into,
        env=code_env(into),
        capture_output=True,
        text=True,
        check=False,
    )
    if check.returncode != 0 or not check.stdout.strip().startswith(str(into)):
        raise RuntimeError(f"the code snapshot does not import from {into}:\n{check.stdout}{check.stderr}")
    return into


def code_env(code: Path) -> dict[str, str]:
    """The environment of a subprocess that imports the snapshot (PYTHONPATH precedes the editable install's finder)."""
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(code), os.environ.get("PYTHONPATH")]))}


def code_identity() -> str:
    """The commit the snapshot was taken on, and how many of its packages' files differ from it."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True, check=True).stdout.strip()
        status = subprocess.run(["git", "status", "--porcelain", "--", *CODE_PACKAGES], cwd=REPO, capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return "not a git checkout"
    changed = len(status.splitlines())
    return f"commit {head}" + (f" with {changed} changed file(s) in {', '.join(CODE_PACKAGES)}" if changed else ", clean")


def stop_process(process: subprocess.Popen[bytes] | None, timeout_s: float = 10.0) -> None:
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def http_json(url: str, timeout_s: float = 2.0) -> Any:
    with urllib.request.urlopen(url, timeout=timeout_s) as response:
        return json.loads(response.read())


class Monitor:
    """`pipepulse run --no-log-alerts` under one prefix, as a subprocess."""

    def __init__(self, url: str, prefix: str, code: Path, state_dir: Path, log_path: Path) -> None:
        self.names = Names(prefix)
        self.log_path = log_path
        self.events_seen = 0
        state_dir.mkdir(parents=True, exist_ok=True)
        env = {**code_env(code), "PIPEPULSE_REDIS_URL": url, "PIPEPULSE_PREFIX": prefix, "PIPEPULSE_STATE_DIR": str(state_dir)}
        with log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "processors", "run", "--no-log-alerts"],
                cwd=code,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=die_with_parent,
            )

    def check(self) -> None:
        if self.process.poll() is not None:
            raise RuntimeError(f"pipepulse run exited with {self.process.returncode}:\n{tail(self.log_path)}")

    def first_error(self) -> str:
        """The first ERROR line of its log, with the exception that ends its traceback, or ""."""
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        for i, line in enumerate(lines):
            if " ERROR " in line:
                cause = next((l.strip() for l in lines[i + 1 :] if l and not l.startswith((" ", "Traceback"))), "")
                return f"{line.strip()} / {cause}"
        return ""

    def healthy(self, client: redis.Redis) -> str:
        """"" if it has committed new events since the last call and dead-lettered none; else what is wrong."""
        self.check()
        counters = committed_counters(client, self.names, "monitor")
        events, dead = counters.get("events_total", 0), counters.get("dead_letters_total", 0)
        problem = ""
        if dead:
            problem = f"dead-lettered {dead} entries"
        elif events <= self.events_seen:
            problem = f"committed no new events ({events} in all)"
        self.events_seen = events
        error = self.first_error()
        return f"{problem}; log: {error}" if problem and error else problem

    def has_group(self, client: redis.Redis) -> bool:
        self.check()
        try:
            groups: list[dict[str, Any]] = client.xinfo_groups(self.names.events)
        except redis.ResponseError:
            return False
        return any(g["name"].decode() == self.names.group("monitor") for g in groups)

    def stop(self) -> None:
        stop_process(self.process)


def start_prometheus(binary: str, root: Path, target_port: int, log_path: Path) -> tuple[subprocess.Popen[bytes], str]:
    rules = root / "rules.yml"
    rules.write_text(PROMETHEUS_RULES)
    config = root / "prometheus.yml"
    config.write_text(PROMETHEUS_CONFIG.format(rules=rules, port=target_port))
    port = free_port()
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [binary, f"--config.file={config}", f"--storage.tsdb.path={root / 'tsdb'}", f"--web.listen-address=127.0.0.1:{port}"],
            cwd=root,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=die_with_parent,
        )
    return process, f"http://127.0.0.1:{port}"


# -- the detectors, seen from the bench ------------------------------------


@dataclass(slots=True)
class Seen:
    received_s: float  # wall clock in the bench
    transition: str
    severity: str
    at_s: float  # the event's own time (the monitor's stream time)
    value: float | None


class AlertStreamReader(threading.Thread):
    """XREAD BLOCK on `{prefix}:alerts`; keeps every max_error_rate event of the component with its receipt time."""

    def __init__(self, url: str) -> None:
        super().__init__(name="alerts-reader", daemon=True)
        self._client = redis.Redis.from_url(url, socket_timeout=5)
        self._lock = threading.Lock()
        self._stream: str | None = None
        self._last_id = "0-0"
        self.events: list[Seen] = []
        self.error: BaseException | None = None
        self.halt = threading.Event()

    def watch(self, stream: str) -> None:
        with self._lock:
            self._stream, self._last_id = stream, "0-0"
            self.events = []

    def run(self) -> None:
        try:
            while not self.halt.is_set():
                with self._lock:
                    stream, last_id = self._stream, self._last_id
                if stream is None:
                    time.sleep(XREAD_BLOCK_MS / 1000)
                    continue
                response: list[Any] = self._client.xread({stream: last_id}, count=100, block=XREAD_BLOCK_MS)  # type: ignore[assignment]
                received_s = time.time()
                if not response:
                    continue
                with self._lock:
                    if stream != self._stream:
                        continue  # switched meanwhile
                    for entry_id, fields in response[0][1]:
                        self._last_id = entry_id.decode()
                        body = json.loads(fields[b"json"])
                        if body["rule"] == RULE and body["labels"].get("component") == COMPONENT:
                            self.events.append(Seen(received_s, body["transition"], body["severity"], body["at_s"], body.get("value")))
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            self.error = exc
        finally:
            self._client.close()

    def since(self, t: float) -> list[Seen]:
        self.check()
        with self._lock:
            return [e for e in self.events if e.received_s >= t]

    def check(self) -> None:
        if self.error is not None:
            raise RuntimeError(f"the alerts reader failed: {self.error!r}")


@dataclass(slots=True)
class PromState:
    seen_s: float
    state: str  # "firing", "pending" or "inactive" (absent from /api/v1/alerts)
    active_at_s: float | None


def _rfc3339(text: str) -> float:
    """Prometheus' activeAt ("2026-01-01T00:00:00.123456789Z", nanoseconds) as seconds since the epoch."""
    head, _, frac = text.rstrip("Z").partition(".")
    seconds = datetime.fromisoformat(head + "+00:00").timestamp()
    return seconds + (float("0." + frac) if frac else 0.0)


class PrometheusPoller(threading.Thread):
    """GET /api/v1/alerts every 20 ms; records each change of HighErrorRate's state with the time it was seen."""

    def __init__(self, base_url: str) -> None:
        super().__init__(name="prometheus-poller", daemon=True)
        self._url = base_url + "/api/v1/alerts"
        self._lock = threading.Lock()
        self.changes: list[PromState] = []
        self.state = "inactive"
        self.error: BaseException | None = None
        self.halt = threading.Event()

    def run(self) -> None:
        failures = 0
        try:
            while not self.halt.is_set():
                started = time.monotonic()
                try:
                    alerts = http_json(self._url)["data"]["alerts"]
                    failures = 0
                except (OSError, urllib.error.URLError, ValueError):
                    failures += 1
                    if failures > 50:
                        raise
                    time.sleep(POLL_S)
                    continue
                seen_s = time.time()
                mine = [a for a in alerts if a["labels"].get("alertname") == PROM_ALERT]
                state = "firing" if any(a["state"] == "firing" for a in mine) else ("pending" if mine else "inactive")
                if state != self.state:
                    active_at = next((_rfc3339(a["activeAt"]) for a in mine if a.get("activeAt")), None)
                    with self._lock:
                        self.state = state
                        self.changes.append(PromState(seen_s, state, active_at))
                self.halt.wait(max(0.0, POLL_S - (time.monotonic() - started)))
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            self.error = exc

    def since(self, t: float) -> list[PromState]:
        self.check()
        with self._lock:
            return [c for c in self.changes if c.seen_s >= t]

    def check(self) -> None:
        if self.error is not None:
            raise RuntimeError(f"the Prometheus poller failed: {self.error!r}")


# -- trials --------------------------------------------------------------


@dataclass(slots=True)
class Trial:
    index: int
    jitter_s: float
    injected_s: float
    pipepulse: Seen | None = None
    prometheus: PromState | None = None
    flapping: bool = False  # pipepulse sent "flapping" instead of "firing"
    fault_s: float = 0.0  # how long the fault lasted
    pipepulse_resolved_s: float | None = None  # after the end of the fault
    prometheus_resolved_s: float | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def pipepulse_latency_s(self) -> float | None:
        return None if self.pipepulse is None else self.pipepulse.received_s - self.injected_s

    @property
    def prometheus_latency_s(self) -> float | None:
        return None if self.prometheus is None else self.prometheus.seen_s - self.injected_s


class Child:
    """The emitting process and its end of the pipe."""

    def __init__(self, url: str, rate: float, seed: int) -> None:
        self.conn, child_end = CTX.Pipe()
        self.process = CTX.Process(target=emit, args=(url, rate, seed, child_end), name="emitter", daemon=True)
        self.process.start()
        child_end.close()

    def expect(self, kind: str, timeout_s: float = 30.0) -> tuple[Any, ...]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not self.process.is_alive():
                raise RuntimeError(f"the emitting process exited with {self.process.exitcode}")
            if self.conn.poll(0.1):
                message = self.conn.recv()
                if message[0] == kind:
                    return tuple(message)
        raise TimeoutError(f"the emitting process did not answer {kind!r} within {timeout_s:g} s")

    def stop(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            self.conn.send(("stop",))
        self.process.join(5)
        if self.process.is_alive():
            self.process.terminate()
            self.process.join(5)
        self.conn.close()


def run_trial(index: int, child: Child, reader: AlertStreamReader, poller: PrometheusPoller, deadline_s: float, resolve_timeout_s: float) -> Trial:
    jitter = random.uniform(0.0, 1.0)
    time.sleep(jitter)
    child.conn.send(("fault", True))
    _, _, injected = child.expect("fault", 5.0)
    trial = Trial(index, jitter, injected)
    flapping_before = any(e.transition == "flapping" for e in reader.since(0)) and not any(e.transition == "settled" for e in reader.since(0))
    end = time.time() + deadline_s
    while time.time() < end and ((trial.pipepulse is None and not trial.flapping) or trial.prometheus is None):
        if trial.pipepulse is None:
            for event in reader.since(injected):
                if event.transition == "firing":
                    trial.pipepulse = event
                    break
                if event.transition == "flapping" and not trial.flapping:
                    trial.flapping = True
                    trial.notes.append(f"pipepulse sent 'flapping' {event.received_s - injected:.2f} s after the injection instead of 'firing'")
        if trial.prometheus is None:
            trial.prometheus = next((c for c in poller.since(injected) if c.state == "firing"), None)
        time.sleep(0.01)
    if flapping_before and trial.pipepulse is None and not trial.flapping:
        trial.notes.append("pipepulse's alert was already flapping: no firing page")
    for name, seen in (("pipepulse", trial.pipepulse), ("prometheus", trial.prometheus)):
        if seen is None and not (name == "pipepulse" and trial.flapping):
            trial.notes.append(f"{name} missed: no firing alert within {deadline_s:g} s")
    child.conn.send(("fault", False))
    _, _, ended = child.expect("fault", 5.0)
    trial.fault_s = ended - injected
    # Both must be back to normal before the next trial's settle period starts.
    fired_at = trial.pipepulse.received_s if trial.pipepulse else injected
    pipepulse_done = trial.flapping or flapping_before or trial.pipepulse is None  # nothing to resolve
    end = time.time() + resolve_timeout_s
    while time.time() < end:
        if trial.pipepulse_resolved_s is None:
            resolved = next((e for e in reader.since(fired_at) if e.transition in ("resolved", "settled")), None)
            if resolved is not None:
                trial.pipepulse_resolved_s = resolved.received_s - ended
        if trial.prometheus_resolved_s is None and poller.state == "inactive":
            trial.prometheus_resolved_s = time.time() - ended
        if (trial.pipepulse_resolved_s is not None or pipepulse_done) and trial.prometheus_resolved_s is not None:
            break
        time.sleep(0.05)
    else:
        trial.notes.append(f"not resolved within {resolve_timeout_s:g} s of the end of the fault")
    return trial


def pipepulse_active(events: list[Seen]) -> bool:
    """Whether the alert's last state change on the watched stream left it pending or firing (flapping: see run_trial)."""
    changes = [e.transition for e in events if e.transition in ("pending", "dropped", "firing", "resolved", "flapping", "settled")]
    return bool(changes) and changes[-1] in ("pending", "firing")


# -- figures -------------------------------------------------------------


def summary(values: list[float]) -> tuple[float, float, float, float]:
    a = np.asarray(values, dtype=np.float64)
    return float(np.percentile(a, 50)), float(np.percentile(a, 99)), float(a.max()), float(a.mean())


def fmt_s(value: float | None) -> str:
    return f"{value:6.3f} s" if value is not None else "  miss  "


def fmt_rate(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1%}"


def fmt(value: float | None, width: int = 6) -> str:
    return f"{value:{width}.3f}" if value is not None else " " * (width - 4) + "miss"


def host_busy_s() -> float:
    times = psutil.cpu_times()
    return float(sum(times) - times.idle - getattr(times, "iowait", 0.0))


class CpuMeter:
    """CPU seconds of this benchmark's processes (their children included) against the whole machine's."""

    def __init__(self) -> None:
        self.pids: set[int] = {os.getpid()}
        self._ours_at_start = 0.0
        self._host_at_start = host_busy_s()
        self._seen: dict[int, float] = {}

    def add(self, pid: int) -> None:
        self.pids.add(pid)
        self.sample()

    def sample(self) -> None:
        """Remember each process's CPU so far, so one that has ended still counts."""
        for pid in list(self.pids):
            try:
                proc = psutil.Process(pid)
                t = proc.cpu_times()
                total = t.user + t.system
                for c in proc.children(recursive=True):
                    with contextlib.suppress(psutil.Error):
                        ct = c.cpu_times()
                        self._seen[c.pid] = ct.user + ct.system
                self._seen[pid] = total
            except psutil.Error:
                pass

    def start(self) -> None:
        self.sample()
        self._ours_at_start = sum(self._seen.values())
        self._host_at_start = host_busy_s()

    def cores(self, seconds: float) -> tuple[float, float]:
        """(ours, others) in cores over `seconds`."""
        self.sample()
        ours = (sum(self._seen.values()) - self._ours_at_start) / seconds
        host = (host_busy_s() - self._host_at_start) / seconds
        return ours, max(0.0, host - ours)


def loadavg() -> str:
    return " / ".join(f"{x:.2f}" for x in os.getloadavg())


# -- main ----------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--rate", type=float, default=200.0, help="operations/s of the emitting process")
    parser.add_argument("--quick", action="store_true", help="a smoke run: 3 trials")
    parser.add_argument("--warmup", type=float, default=20.0, help="normal traffic before the first trial (s); at least the 10 s window and a few evaluations")
    parser.add_argument("--settle", type=float, default=12.0, help="normal traffic after both resolved, before the next trial (s); at least a full window")
    parser.add_argument("--deadline", type=float, default=30.0, help="a detector that has not fired this long after the injection missed (s)")
    parser.add_argument("--resolve-timeout", type=float, default=60.0, help="longest wait for both alerts to resolve after the fault (s)")
    parser.add_argument("--one-monitor", action="store_true", help="one pipepulse monitor for all trials (its flapping policy then replaces later pages)")
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args()
    trials = 3 if args.quick else args.trials
    if args.warmup < 12 or args.settle < 12:
        parser.error("--warmup and --settle must be at least 12 s: a full 10 s window of normal traffic, evaluated")
    binary = shutil.which("prometheus")
    if binary is None:
        print(f"detection_latency: no `prometheus` binary on PATH; {INSTALL_HINT}", file=sys.stderr)
        return 2
    version = subprocess.run([binary, "--version"], capture_output=True, text=True, check=False)
    prometheus_version = (version.stdout or version.stderr).splitlines()[0] if (version.stdout or version.stderr) else "unknown version"
    seed = args.seed if args.seed is not None else random.randrange(1 << 30)
    random.seed(seed)

    def terminate(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt  # clean up as on Ctrl-C

    signal.signal(signal.SIGTERM, terminate)
    print(f"detection latency: pipepulse (default rules, {RULE}) against Prometheus ({prometheus_version}), on {psutil.cpu_count()} cores")
    print(f"workload: one emitting process, {args.rate:g} ops/s, {BASELINE_ERROR_RATE:.0%} errors; fault: {FAULT_ERROR_RATE:.0%} errors until both fired")
    print(f"{trials} trials, warm-up {args.warmup:g} s, settle {args.settle:g} s after both resolved, injection jitter U(0, 1) s, seed {seed}")
    print(f"monitor: {'one for all trials' if args.one_monitor else 'a fresh pipepulse run (new prefix) per trial, so its flapping policy cannot replace the page'}")
    print(f"load average (1/5/15 min) at the start: {loadavg()}", flush=True)

    results: list[Trial] = []
    interrupted = False
    started = time.monotonic()
    meter = CpuMeter()
    with contextlib.ExitStack() as stack:
        root = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="pipepulse-detection-")))
        identity = code_identity()
        code = snapshot_code(root / "code")
        sys.path.insert(0, str(code))  # the emitting process (spawned) imports the snapshot too
        print(f"code: {identity}, copied at the start; every process of the run uses that copy", flush=True)
        server = EmbeddedServer(ServerSettings(data_dir=root / "server", appendonly=False, port=0)).start()
        stack.callback(server.stop)
        client = redis.Redis.from_url(server.url, socket_timeout=10)
        stack.callback(client.close)
        meter.add(int(client.info("server")["process_id"]))
        child = Child(server.url, args.rate, seed)
        stack.callback(child.stop)
        _, metrics_port, emitter_file = child.expect("ready")
        if not str(emitter_file).startswith(str(code)):
            raise RuntimeError(f"the emitting process imported {emitter_file}, not the snapshot in {code}")
        meter.add(child.process.pid)  # type: ignore[arg-type]
        (root / "prometheus").mkdir()
        prometheus, prometheus_url = start_prometheus(binary, root / "prometheus", metrics_port, root / "prometheus.log")
        stack.callback(stop_process, prometheus)
        meter.add(prometheus.pid)
        monitors: list[Monitor] = []

        def stop_monitors() -> None:
            for m in monitors:
                meter.sample()
                m.stop()

        stack.callback(stop_monitors)
        reader = AlertStreamReader(server.url)
        poller = PrometheusPoller(prometheus_url)

        def halt_threads() -> None:
            reader.halt.set()
            poller.halt.set()
            reader.join(2)
            poller.join(2)

        stack.callback(halt_threads)
        try:

            def ready() -> bool:
                if prometheus.poll() is not None:
                    raise RuntimeError(f"prometheus exited with {prometheus.returncode}:\n{tail(root / 'prometheus.log')}")
                try:
                    with urllib.request.urlopen(prometheus_url + "/-/ready", timeout=1) as response:
                        return bool(response.status == 200)
                except OSError:
                    return False

            wait_until(ready, 60, "Prometheus /-/ready")
            wait_until(
                lambda: any(t["health"] == "up" for t in http_json(prometheus_url + "/api/v1/targets")["data"]["activeTargets"]),
                30,
                "Prometheus' first scrape of the emitting process",
                0.1,
            )
            reader.start()
            poller.start()
            meter.start()
            monitor: Monitor | None = None
            for index in range(1, trials + 1):
                if monitor is None or not args.one_monitor:
                    if monitor is not None:
                        meter.sample()
                        monitor.stop()
                    prefix = f"ddl{index}" if not args.one_monitor else "ddl"
                    monitor = Monitor(server.url, prefix, code, root / f"state-{prefix}", root / f"pipepulse-{prefix}.log")
                    monitors.append(monitor)
                    meter.add(monitor.process.pid)
                    wait_until(lambda: monitor.has_group(client), 60, "pipepulse run's consumer group")  # noqa: B023 - called at once
                    child.conn.send(("prefix", prefix))
                    child.expect("prefix")
                    reader.watch(monitor.names.stream("alerts"))
                normal_since = time.time()
                wait_s = args.warmup if index == 1 else args.settle
                time.sleep(wait_s)
                problem = monitor.healthy(client)
                if problem:
                    raise RuntimeError(f"pipepulse run ({monitor.names.prefix}) is not processing before trial {index}: {problem}")
                if poller.state != "inactive":
                    wait_until(lambda: poller.state == "inactive", 30, "Prometheus' alert to clear before the trial")
                for e in reader.since(normal_since):  # false alarms on normal traffic, reported, and over before the trial
                    if e.transition in ("firing", "resolved"):
                        print(f"  trial {index:2d}: before the fault, pipepulse {e.transition} at +{e.at_s - normal_since:.1f} s of normal traffic (value {fmt_rate(e.value)})", flush=True)
                if pipepulse_active(reader.since(0)):
                    wait_until(lambda: not pipepulse_active(reader.since(0)), 30, "pipepulse's alert on normal traffic to resolve before the trial")
                    print(f"  trial {index:2d}: waited for it to resolve", flush=True)
                trial = run_trial(index, child, reader, poller, args.deadline, args.resolve_timeout)
                monitor.check()
                if trial.pipepulse is None and not trial.flapping and (problem := monitor.healthy(client)):
                    trial.notes.append(f"pipepulse run is not processing: {problem}")
                results.append(trial)
                pp, prom = trial.pipepulse, trial.prometheus
                pp_parts = f"(judged +{pp.at_s - trial.injected_s:.3f}, read +{pp.received_s - pp.at_s:.3f}, {pp.severity})" if pp else ""
                prom_parts = f"(active +{prom.active_at_s - trial.injected_s:.3f}, poll +{prom.seen_s - prom.active_at_s:.3f})" if prom and prom.active_at_s else ""
                resolved = f"resolved after {fmt(trial.pipepulse_resolved_s, 4)} / {fmt(trial.prometheus_resolved_s, 4)} s"
                print(
                    f"  trial {index:2d}: jitter {trial.jitter_s:.2f}  pipepulse {fmt_s(trial.pipepulse_latency_s)} {pp_parts:<40} "
                    f"prometheus {fmt_s(trial.prometheus_latency_s)} {prom_parts:<30} fault {trial.fault_s:.1f} s, {resolved}",
                    flush=True,
                )
                for note in trial.notes:
                    print(f"            {note}", flush=True)
        except KeyboardInterrupt:
            interrupted = True
            print("\ninterrupted: cleaning up", flush=True)
        elapsed = time.monotonic() - started
        ours, others = meter.cores(max(elapsed, 1e-9))

    report(results, trials, interrupted)
    print(f"load average (1/5/15 min) at the end:   {loadavg()}")
    print(f"CPU during the run: this benchmark {ours:.2f} cores, anything else {others:.2f} cores (of {psutil.cpu_count()}); wall {elapsed:.0f} s")
    return 130 if interrupted else 0


def report(results: list[Trial], planned: int, interrupted: bool) -> None:
    pipepulse = [t.pipepulse_latency_s for t in results if t.pipepulse_latency_s is not None]
    prometheus = [t.prometheus_latency_s for t in results if t.prometheus_latency_s is not None]
    print(f"\n== detection latency, injection -> firing alert seen by the bench ({len(results)} of {planned} trials{', interrupted' if interrupted else ''})")
    print(f"{'':12}{'n':>4}{'miss':>6}{'p50':>9}{'p99':>9}{'max':>9}{'mean':>9}")
    figures: dict[str, tuple[float, float, float, float]] = {}
    for name, values in (("pipepulse", pipepulse), ("prometheus", prometheus)):
        misses = len(results) - len(values)
        if values:
            figures[name] = summary(values)
            p50, p99, high, mean = figures[name]
            print(f"{name:12}{len(values):4d}{misses:6d}{p50:8.3f}s{p99:8.3f}s{high:8.3f}s{mean:8.3f}s")
        else:
            print(f"{name:12}{0:4d}{misses:6d}   (no detection)")
    if "pipepulse" in figures and "prometheus" in figures:
        a, b = figures["pipepulse"], figures["prometheus"]
        print(f"{'ratio pp/prom':22}" + "".join(f"{x / y:8.2f} " for x, y in zip(a, b)))
    judged = [t.pipepulse.at_s - t.injected_s for t in results if t.pipepulse]
    read = [t.pipepulse.received_s - t.pipepulse.at_s for t in results if t.pipepulse]
    active = [t.prometheus.active_at_s - t.injected_s for t in results if t.prometheus and t.prometheus.active_at_s]
    if judged:
        print(f"pipepulse parts:  judged (event at_s - injection) p50 {np.percentile(judged, 50):.3f} max {max(judged):.3f} s; at_s -> read by the bench p50 {np.percentile(read, 50):.3f} max {max(read):.3f} s")
    if active:
        print(f"prometheus parts: activeAt - injection p50 {np.percentile(active, 50):.3f} max {max(active):.3f} s (the rest is the 20 ms API poll)")
    if "pipepulse" in figures:
        p99 = figures["pipepulse"][1]
        misses = len(results) - len(pipepulse)
        met = p99 <= TARGET_S and misses == 0
        print(f"target: pipepulse p99 <= 1 s + for (for = 0 s for {RULE}): p99 {p99:.3f} s{f', {misses} missed' if misses else ''} -> {'MET' if met else 'NOT MET'}")
    elif results:
        print(f"target: pipepulse p99 <= 1 s + for (for = 0 s for {RULE}): NOT MET (no detection)")
    else:
        print(f"target: pipepulse p99 <= 1 s + for (for = 0 s for {RULE}): not judged (no trial completed)")


if __name__ == "__main__":
    sys.exit(main())
