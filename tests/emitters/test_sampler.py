from __future__ import annotations

import psutil
import pytest

from emitters import Emitter, SystemSampler
from emitters.testing import MemorySink
from schemas import SystemSample

from tests.conftest import wait_until


def test_one_sample_describes_this_process_and_its_host() -> None:
    sink = MemorySink()
    em = Emitter("parser", sink=sink)
    SystemSampler(em, interval_s=60).sample()
    assert em.flush(5)
    samples = {s.scope: s for s in sink.events if isinstance(s, SystemSample)}  # decoded and validated by the codec
    process, host = samples["process"], samples["host"]
    assert 0 < process.rss_bytes < process.memory_total_bytes == psutil.virtual_memory().total
    assert process.threads >= 2  # this thread and the flusher
    assert process.open_files > 0
    assert host.rss_bytes > process.rss_bytes
    em.close()


def test_the_sampler_runs_on_its_schedule_until_stopped() -> None:
    sink = MemorySink()
    em = Emitter("parser", sink=sink)
    sampler = SystemSampler(em, interval_s=0.05, host=False).start()
    wait_until(lambda: sum(isinstance(e, SystemSample) for e in sink.events) >= 3, what="three samples")
    sampler.stop()
    em.close()
    assert {e.scope for e in sink.events if isinstance(e, SystemSample)} == {"process"}


def test_a_bad_interval_is_refused() -> None:
    with pytest.raises(ValueError, match="interval_s"):
        SystemSampler(Emitter("parser", sink=MemorySink()), interval_s=0)
