"""The main process's monitoring: one emitter per component, the control clients, the fault watcher, a sampler.

Kept apart from the pipeline so that `--no-monitoring` runs the same pipeline with none of it.
"""

from __future__ import annotations

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from emitters.config import EmitterConfig
from emitters.control import ControlClient
from emitters.demo.faults import FaultWatcher
from emitters.demo.topology import DEPENDS_ON
from emitters.emitter import Emitter
from emitters.sampler import SystemSampler

SAMPLE_INTERVAL_S = 2.0


class Instruments:
    """Everything the main process reports and obeys; `start` begins the background reads, `close` ends them."""

    def __init__(self, config: EmitterConfig, *, concurrency: int, cache_size: int) -> None:
        self.config = config
        self.file_watcher = Emitter("file_watcher", config=config)
        self.cache = Emitter("breadcrumb_cache", config=config, component_config={"cache_size": cache_size}, depends_on=DEPENDS_ON["breadcrumb_cache"])
        self.extractor = Emitter(
            "extractor", config=config, component_config={"concurrency": concurrency, "restart_generation": 0}, depends_on=DEPENDS_ON["extractor"]
        )
        self.detector = Emitter("detector", config=config, depends_on=DEPENDS_ON["detector"])
        self.emitters = (self.file_watcher, self.cache, self.extractor, self.detector)
        self.sampler = SystemSampler(self.file_watcher, interval_s=SAMPLE_INTERVAL_S, host=True)
        self.extractor_control = ControlClient(
            "extractor", {"concurrency": concurrency, "restart_generation": 0}, config.redis_url, prefix=config.prefix, emitter=self.extractor
        )
        self.cache_control = ControlClient("breadcrumb_cache", {"cache_size": cache_size}, config.redis_url, prefix=config.prefix, emitter=self.cache)
        self._client = redis.Redis.from_url(
            config.redis_url,
            socket_timeout=config.socket_timeout_s,
            socket_connect_timeout=config.socket_timeout_s,
            retry=Retry(NoBackoff(), 0),
        )
        self.faults = FaultWatcher(self._client, prefix=config.prefix)

    def start(self) -> Instruments:
        self.sampler.start()
        self.extractor_control.start()
        self.cache_control.start()
        self.faults.start()
        return self

    def close(self) -> None:
        self.faults.close()
        self.cache_control.close()
        self.extractor_control.close()
        self.sampler.stop()
        for emitter in self.emitters:
            emitter.close()
        self._client.close()
