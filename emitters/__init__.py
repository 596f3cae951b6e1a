"""The client library pipeline processes import to emit events; it never raises into, or blocks, its host."""

from emitters.alert_sinks import LoggingSink, WebhookForwarder, alertmanager_payload
from emitters.alerts import AlertSubscriber
from emitters.config import EmitterConfig
from emitters.control import ControlClient, ControlStats
from emitters.emitter import Emitter, EmitterStats
from emitters.errors import ConfigError, EmitterError, SinkError, WebhookError
from emitters.integration import Completion, IntegrationStats, PerformanceIntegrationService
from emitters.integration_alerts import PerformanceAlert
from emitters.sampler import SystemSampler
from emitters.sink import RedisSink, Sink
from emitters.tracking import Operation

__all__ = [
    "AlertSubscriber",
    "LoggingSink",
    "WebhookError",
    "WebhookForwarder",
    "alertmanager_payload",
    "ConfigError",
    "ControlClient",
    "ControlStats",
    "Emitter",
    "EmitterConfig",
    "EmitterError",
    "EmitterStats",
    "Operation",
    "Completion",
    "IntegrationStats",
    "PerformanceAlert",
    "PerformanceIntegrationService",
    "RedisSink",
    "Sink",
    "SinkError",
    "SystemSampler",
]
