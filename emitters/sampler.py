"""Resource samples of this process and its host (CPU, memory, disk and network I/O), taken by psutil on a background thread."""

from __future__ import annotations

import logging
import os
import threading

import psutil

from emitters.emitter import Emitter

log = logging.getLogger("pipepulse.sampler")


class SystemSampler:
    """Emits a `process` and a `host` SystemSample every `interval_s` through `emitter`.

    >>> sampler = SystemSampler(em, interval_s=5.0); sampler.start(); ...; sampler.stop()
    """

    def __init__(self, emitter: Emitter, *, interval_s: float = 5.0, host: bool = True) -> None:
        if not interval_s > 0:
            raise ValueError(f"interval_s must be positive, got {interval_s}")
        self.emitter = emitter
        self.interval_s = interval_s
        self.host = host
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._process: psutil.Process | None = None

    def start(self) -> SystemSampler:
        self._thread = threading.Thread(target=self._run, name="pipepulse-sampler", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 2.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)

    def _run(self) -> None:
        while True:
            try:
                self.sample()
            except (psutil.Error, OSError) as exc:  # a sampler must never take its host down
                log.warning("pipepulse system sample failed: %s", exc)
            if self._stop.wait(self.interval_s):  # a timer, not synchronisation: samples are periodic
                return

    def sample(self) -> None:
        """Take one process sample (and one host sample) now."""
        if self._process is None or self._process.pid != os.getpid():  # first call, or a forked child
            self._process = psutil.Process()
            self._process.cpu_percent()
        proc = self._process
        with proc.oneshot():
            io = proc.io_counters() if hasattr(proc, "io_counters") else None
            self.emitter.system_sample(
                scope="process",
                cpu_percent=proc.cpu_percent(),
                rss_bytes=proc.memory_info().rss,
                memory_total_bytes=psutil.virtual_memory().total,
                read_bytes=io.read_bytes if io else 0,
                write_bytes=io.write_bytes if io else 0,
                threads=proc.num_threads(),
                open_files=proc.num_fds() if hasattr(proc, "num_fds") else len(proc.open_files()),
            )
        if self.host:
            memory = psutil.virtual_memory()
            disk = psutil.disk_io_counters()
            net = psutil.net_io_counters()  # the host's interfaces together; None where the platform has none
            self.emitter.system_sample(
                scope="host",
                cpu_percent=psutil.cpu_percent(),
                rss_bytes=memory.total - memory.available,
                memory_total_bytes=memory.total,
                read_bytes=disk.read_bytes if disk else 0,
                write_bytes=disk.write_bytes if disk else 0,
                threads=0,
                open_files=0,
                net_sent_bytes=net.bytes_sent if net else None,
                net_recv_bytes=net.bytes_recv if net else None,
                net_sent_packets=net.packets_sent if net else None,
                net_recv_packets=net.packets_recv if net else None,
            )
