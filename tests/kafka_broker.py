"""A real Kafka-protocol broker on loopback for the tests: the server binary in the `noida-db` wheel.

It is run directly (not through the `noida-db` script, whose signals would orphan it), in a
data directory of its own, and dies with the test process (PR_SET_PDEATHSIG) even when that
is killed. `start()` waits until the port accepts connections.

Known limits of this broker (found while choosing it): a consumer-group leader that dies
without leaving strands its group unless members use static membership
(`group_instance_id`); and it stores records as JSON, about 3x their size on disk.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import time
from importlib import resources
from pathlib import Path

from processors.embedded import die_with_parent, free_port



def binary() -> Path:
    """The broker binary inside the installed `noida_db` package; FileNotFoundError if there is none."""
    path = Path(str(resources.files("noida_db").joinpath("noida-db")))
    if not path.is_file():
        raise FileNotFoundError(f"no broker binary at {path}")
    path.chmod(path.stat().st_mode | 0o111)
    return path


class KafkaBroker:
    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.port = free_port()
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"kafka://{self.bootstrap}"

    def partitions(self, topic: str) -> int:
        """How many partitions `topic` has; 0 while it does not exist (asking does not create it)."""
        return asyncio.run(_partitions(self.bootstrap, topic))

    def start(self, timeout_s: float = 15.0) -> KafkaBroker:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.data_dir / "broker.log", "ab")
        command = [str(binary()), "start", "--only", "kafka", "--kafka-port", str(self.port), "--host", "127.0.0.1", "--data-dir", str(self.data_dir)]
        self._proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, preexec_fn=die_with_parent)
        log.close()
        deadline = time.monotonic() + timeout_s
        while True:  # a port that accepts is the condition; polled with a deadline
            if self._proc.poll() is not None:
                raise RuntimeError(f"the Kafka broker exited with {self._proc.returncode}: {(self.data_dir / 'broker.log').read_text()[-2000:]}")
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.2).close()
                return self
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise TimeoutError(f"the Kafka broker did not open port {self.port} within {timeout_s} s")
                time.sleep(0.01)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.send_signal(sig)
            try:
                self._proc.wait(10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._proc = None


async def _partitions(bootstrap: str, topic: str) -> int:
    from aiokafka.admin import AIOKafkaAdminClient  # here: conftest imports this module for every test

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        if topic not in await admin.list_topics():
            return 0
        return len((await admin.describe_topics([topic]))[0]["partitions"])
    finally:
        await admin.close()


def required() -> bool:
    """CI sets PIPEPULSE_KAFKA_TESTS=required: there, a broker that cannot start fails the tests instead of skipping them."""
    return os.environ.get("PIPEPULSE_KAFKA_TESTS") == "required"
