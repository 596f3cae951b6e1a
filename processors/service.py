"""Running workers in threads (and helper processes) until Ctrl-C, SIGTERM or a closed terminal, for the long-running commands."""

from __future__ import annotations

import signal
import subprocess
import threading
from types import FrameType
from typing import Callable, Mapping, Protocol, Sequence

import click

from processors.embedded import die_with_parent

CHILD_STOP_TIMEOUT_S = 30.0  # then a helper that hangs on stop is killed, so `run` always ends


class Runner(Protocol):
    def run(self, stop: threading.Event) -> None: ...


def stop_on_signals() -> threading.Event:
    """An event set by SIGTERM, SIGINT or SIGHUP (a closed terminal): each worker then finishes and commits the batch in hand."""
    stop = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        if signum == signal.SIGHUP and signal.getsignal(signum) is signal.SIG_IGN:
            continue  # started under nohup: a closed terminal is meant to change nothing
        signal.signal(signum, request_stop)
    return stop


def spawn(command: Sequence[str], env: Mapping[str, str]) -> subprocess.Popen[bytes]:
    """A child in a session of its own: only its parent stops it (SIGTERM, when `serve` ends), so a terminal's
    Ctrl-C never reaches it halfway through starting (a traceback) or ahead of the parent's own shutdown;
    and it gets SIGTERM when the parent dies however it dies, so no helper outlives `run`."""
    return subprocess.Popen(list(command), env=dict(env), start_new_session=True, preexec_fn=die_with_parent)


Child = tuple[subprocess.Popen[bytes], bool]  # a helper process, and whether everything stops when it exits


def serve(
    stop: threading.Event, runners: Sequence[Runner], start_children: Callable[[], list[Child]] = list, child_stop_timeout_s: float = CHILD_STOP_TIMEOUT_S
) -> None:
    """Run every runner in its own thread and the children as processes; stop them all when `stop` is set.

    A required child that exits stops everything; an optional one (the web server) is reported and left stopped.
    """
    threads = [threading.Thread(target=r.run, args=(stop,), name=type(r).__name__) for r in runners]
    for thread in threads:
        thread.start()
    children: list[Child] = []
    try:
        children = start_children()
        while not stop.wait(0.5):
            if any(not t.is_alive() for t in threads):
                raise click.ClickException("a worker thread stopped unexpectedly; see the log above")
            for child, required in list(children):
                if child.poll() is None:
                    continue
                what = f"{' '.join(map(str, child.args))} exited with status {child.returncode}; see the log above"  # type: ignore[arg-type]
                if required:
                    raise click.ClickException(what)
                click.echo(f"warning: {what} (everything else keeps running)", err=True)
                children.remove((child, required))
    finally:
        stop.set()
        for child, _ in children:
            child.terminate()
        for child, _ in children:
            try:
                child.wait(child_stop_timeout_s)
            except subprocess.TimeoutExpired:
                click.echo(f"warning: {' '.join(map(str, child.args))} did not stop within {child_stop_timeout_s:g} s: killed", err=True)  # type: ignore[arg-type]
                child.kill()
                child.wait()
        for thread in threads:
            thread.join()
