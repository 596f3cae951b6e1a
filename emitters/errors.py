"""Exceptions of the emitter client.

EmitterError
 ├── ConfigError   a bad setting (raised at construction: a programmer error)
 ├── SinkError     a failed send; caught and counted by the flusher, never raised into the host
 └── WebhookError  an alert webhook POST failed after every attempt; the subscriber keeps the alert pending and retries
"""

from __future__ import annotations


class EmitterError(Exception):
    """Root of every error raised by the emitters package."""


class ConfigError(EmitterError):
    """A setting is out of range or unparsable; the message names the setting."""


class SinkError(EmitterError):
    """A batch could not be delivered; the flusher keeps it and retries with back-off."""


class WebhookError(EmitterError):
    """An alert could not be posted; raised out of the forwarder so the subscriber leaves the entry pending."""
