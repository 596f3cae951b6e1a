"""Running workers in threads (and helper processes) until Ctrl-C or SIGTERM, for the long-running commands."""

from __future__ import annotations

import signal
import subprocess
import threading
from types import FrameType
from typing import Callable, Protocol, Sequence

import click


class Runner(Protocol):
    def run(self, stop: threading.Event) -> None: ...


def stop_on_signals() -> threading.Event:
    """An event set by SIGTERM or SIGINT: each worker then finishes and commits the batch in hand."""
    stop = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    return stop


def serve(stop: threading.Event, runners: Sequence[Runner], start_children: Callable[[], list[subprocess.Popen[bytes]]] = list) -> None:
    """Run every runner in its own thread and the children as processes; stop them all when `stop` is set."""
    threads = [threading.Thread(target=r.run, args=(stop,), name=type(r).__name__) for r in runners]
    for thread in threads:
        thread.start()
    children: list[subprocess.Popen[bytes]] = []
    try:
        children = start_children()
        while not stop.wait(0.5):
            if any(not t.is_alive() for t in threads):
                raise click.ClickException("a worker thread stopped unexpectedly; see the log above")
            for child in children:
                if child.poll() is not None:
                    raise click.ClickException(f"{' '.join(map(str, child.args))} exited with status {child.returncode}; see the log above")  # type: ignore[arg-type]
    finally:
        stop.set()
        for child in children:
            child.terminate()
            child.wait()
        for thread in threads:
            thread.join()
