"""The pipepulse command as users run it: real processes, the real embedded server."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pytest
import redis

from emitters import Emitter
from processors.embedded import EmbeddedServer, free_port
from processors.runtime import read_derived
from processors.service import Child, serve, spawn
from schemas.names import Names

from tests.conftest import wait_until

PIPEPULSE = [sys.executable, "-m", "processors"]


def env_for(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIPEPULSE_")}
    return {**env, "PIPEPULSE_STATE_DIR": str(tmp_path / "state"), "PIPEPULSE_WEB_PORT": str(free_port()), **extra}


def test_server_runs_in_the_foreground_and_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    env = env_for(tmp_path, PIPEPULSE_SERVER_PORT=str(free_port()))
    proc = subprocess.Popen([*PIPEPULSE, "server"], env=env, stdout=subprocess.PIPE, text=True)
    try:
        served(proc, tmp_path, env)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def served(proc: subprocess.Popen[str], tmp_path: Path, env: dict[str, str]) -> None:
    url_file = tmp_path / "state" / "server.url"
    url = wait_until(lambda: url_file.exists() and url_file.read_text(), what="the server URL")
    client = redis.Redis.from_url(url)
    assert client.ping()
    client.xadd("pipepulse:events", {"b": b"\xc1"})
    # another command attaches to the running server instead of starting its own
    tail = subprocess.run([*PIPEPULSE, "tail", "--from-start", "--count", "1"], env=env, capture_output=True, text=True, timeout=30)
    client.close()
    assert tail.returncode == 0, tail.stderr
    assert json.loads(tail.stdout)["rejected"] == "malformed_msgpack"
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0
    assert url in out
    assert not url_file.exists()
    assert (tmp_path / "state" / "data" / "appendonlydir").is_dir()  # AOF on by default


def test_tail_decodes_events_and_reports_rejected_entries(real_server: EmbeddedServer, tmp_path: Path) -> None:
    client = redis.Redis.from_url(real_server.url)
    client.flushall()
    em = Emitter("parser", redis_url=real_server.url)
    em.record("parse_file", duration_ms=12.5, ok=False, error_type="SyntaxError")
    em.close()
    client.xadd("pipepulse:events", {"b": b"\xc1"})
    result = subprocess.run(
        [*PIPEPULSE, "--redis-url", real_server.url, "tail", "--from-start", "--count", "2"],
        env=env_for(tmp_path), capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line.get("type") or line.get("rejected") for line in lines] == ["LifecycleEvent", "OperationEvent", "LifecycleEvent", "malformed_msgpack"]
    op = lines[1]
    assert (op["operation"], op["duration_ms"], op["ok"], op["error_type"], op["seq"]) == ("parse_file", 12.5, False, "SyntaxError", 0)
    client.close()


def test_a_bad_setting_is_a_usage_error_naming_the_variable(tmp_path: Path) -> None:
    result = subprocess.run([*PIPEPULSE, "tail"], env=env_for(tmp_path, PIPEPULSE_SERVER_PORT="http"), capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert "PIPEPULSE_SERVER_PORT" in result.stderr


@contextmanager
def started_from_a_terminal(tmp_path: Path, *command: str) -> Iterator[tuple[subprocess.Popen[str], redis.Redis]]:
    """`pipepulse run` in a process group of its own, which the test signals as a terminal would; yielded once the
    monitor holds its lease, with a client of the embedded server."""
    env = env_for(tmp_path, PIPEPULSE_SERVER_PORT=str(free_port()))
    run = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        url_file = tmp_path / "state" / "server.url"
        client = redis.Redis.from_url(wait_until(lambda: url_file.exists() and url_file.read_text(), timeout_s=30, what="the server URL"))
        wait_until(lambda: client.exists(Names("pipepulse").lease("monitor")), timeout_s=30, what="the monitor holding its lease")
        yield run, client
        client.close()
    finally:
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)
            run.communicate()


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGHUP], ids=["ctrl-c", "terminal-closed"])
def test_a_terminal_signal_stops_every_part_before_the_embedded_server(signum: signal.Signals, tmp_path: Path) -> None:
    """A terminal signals its whole foreground process group; the server must still outlive the parts using it."""
    with started_from_a_terminal(tmp_path, *PIPEPULSE, "run") as (run, client):
        wait_until(lambda: client.exists(Names("pipepulse").lease("optimizer")), timeout_s=30, what="the optimizer holding its lease")
        os.killpg(run.pid, signum)
        _, err = run.communicate(timeout=60)
    assert run.returncode == 0, err
    assert "WARNING" not in err and "Traceback" not in err, err  # every lease released, no part cut off from Redis


def test_under_nohup_a_closed_terminal_changes_nothing(tmp_path: Path) -> None:
    with started_from_a_terminal(tmp_path, "nohup", *PIPEPULSE, "run", "--no-web") as (run, client):
        lease = Names("pipepulse").lease("monitor")
        os.killpg(run.pid, signal.SIGHUP)
        ttl_ms = client.pttl(lease)
        wait_until(lambda: client.pttl(lease) > ttl_ms, timeout_s=30, what="the monitor renewing its lease after the hangup")
        run.send_signal(signal.SIGTERM)
        _, err = run.communicate(timeout=60)
    assert run.returncode == 0, err


def test_a_helper_that_will_not_stop_is_killed_so_serve_always_ends(tmp_path: Path) -> None:
    ready = tmp_path / "ready"
    stubborn = f"import pathlib, signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); pathlib.Path({str(ready)!r}).touch(); time.sleep(600)"
    started: list[Child] = []
    stop = threading.Event()

    def children() -> list[Child]:
        started.append((spawn([sys.executable, "-c", stubborn], os.environ), True))
        return started

    server = threading.Thread(target=serve, args=(stop, [], children, 0.5))
    server.start()
    wait_until(ready.exists, what="the helper to start")
    stop.set()
    server.join(timeout=30)
    assert not server.is_alive()
    assert started[0][0].returncode == -signal.SIGKILL


def test_the_embedded_server_dies_with_a_killed_owner(tmp_path: Path) -> None:
    env = env_for(tmp_path, PIPEPULSE_SERVER_PORT=str(free_port()))
    proc = subprocess.Popen([*PIPEPULSE, "server"], env=env, stdout=subprocess.DEVNULL)
    url_file = tmp_path / "state" / "server.url"
    url = wait_until(lambda: url_file.exists() and url_file.read_text(), what="the server URL")
    proc.kill()
    proc.wait()
    client = redis.Redis.from_url(url, socket_connect_timeout=0.2)

    def refused() -> bool:
        try:
            client.ping()
        except redis.ConnectionError:
            return True
        return False

    wait_until(refused, what="the orphaned server to exit")
    client.close()


EMIT = """
import sys
from emitters import Emitter, EmitterConfig
em = Emitter(sys.argv[1], config=EmitterConfig(redis_url=sys.argv[2], prefix="e2e", batch_max_events=100))
for i in range(int(sys.argv[3])):
    em.record("work", 0.5 + i % 7, ok=i % 10 != 0, error_type="ValueError", cache_hits=i % 2, cache_misses=1 - i % 2)
em.close(timeout_s=10)
print(em.producer_id)
"""


def test_run_folds_several_emitting_processes_and_status_and_replay_report_them(real_server: EmbeddedServer, tmp_path: Path) -> None:
    env = env_for(tmp_path, PIPEPULSE_REDIS_URL=real_server.url, PIPEPULSE_PREFIX="e2e")
    run = subprocess.Popen([*PIPEPULSE, "run"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        emitters = [subprocess.run([sys.executable, "-c", EMIT, component, real_server.url, "3000"], capture_output=True, text=True, timeout=60) for component in ("parser", "parser", "extractor")]
        producer_ids = [e.stdout.strip() for e in emitters]
        client = redis.Redis.from_url(real_server.url)

        def producers() -> dict[str, dict[str, float]]:
            return {k.decode(): json.loads(v) for k, v in client.hgetall("e2e:latest:producers").items()}  # type: ignore[union-attr]

        # Windows close on the runtime's own ticks: the last one within about 10 s.
        wait_until(lambda: all(producers().get(p, {}).get("events_total") == 3002 for p in producer_ids), timeout_s=30, what="every event in the statistics")
        status = subprocess.run([*PIPEPULSE, "status"], env=env, capture_output=True, text=True, timeout=30)
        assert status.returncode == 0, status.stderr
        assert "parser" in status.stdout and "extractor" in status.stdout and "processor monitor" in status.stdout and "health " in status.stdout
        as_json = json.loads(subprocess.run([*PIPEPULSE, "status", "--json"], env=env, capture_output=True, text=True, timeout=30).stdout)
        assert set(as_json["components"]) >= {"parser", "extractor", "__pipeline__"}
        replay = subprocess.run([*PIPEPULSE, "replay"], env=env, capture_output=True, text=True, timeout=60)
        assert replay.returncode == 0, replay.stdout + replay.stderr
        assert json.loads(replay.stdout)["matches"] is True
        totals = [json.loads(entry["json"])["pipeline"]["count"] for entry in read_derived(client, Names("e2e"), "stats")]
        assert sum(totals) == 9000
        client.close()
    finally:
        run.send_signal(signal.SIGTERM)
        out, err = run.communicate(timeout=30)
    assert run.returncode == 0, err
    assert "e2e:events" in out


def test_run_keeps_going_without_the_web_server_when_its_port_is_taken(real_server: EmbeddedServer, tmp_path: Path) -> None:
    client = redis.Redis.from_url(real_server.url)
    client.flushall()
    errors = tmp_path / "run.err"
    with socket.socket() as taken, open(errors, "w") as err_file:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        env = env_for(tmp_path, PIPEPULSE_REDIS_URL=real_server.url, PIPEPULSE_WEB_PORT=str(taken.getsockname()[1]))
        run = subprocess.Popen([*PIPEPULSE, "run", "--no-log-alerts"], env=env, stdout=subprocess.DEVNULL, stderr=err_file, text=True)
        try:
            wait_until(lambda: "everything else keeps running" in errors.read_text(), timeout_s=30, what="run to report the web server gone")
            wait_until(lambda: client.hget("pipepulse:runtime", "monitor") and client.hget("pipepulse:runtime", "optimizer"), timeout_s=30, what="the processors")
            client.hdel("pipepulse:runtime", "monitor")
            wait_until(lambda: client.hget("pipepulse:runtime", "monitor"), timeout_s=30, what="the monitor still running after the web server gave up")
            assert run.poll() is None
        finally:
            run.send_signal(signal.SIGTERM)
            run.wait(60)
    err = errors.read_text()
    assert run.returncode == 0, err
    assert "cannot serve on 127.0.0.1" in err and "everything else keeps running" in err
    client.close()
