"""Exceptions of the emitter client.

EmitterError
 ├── ConfigError   a bad setting (raised at construction: a programmer error)
 └── SinkError     a failed send; caught and counted by the flusher, never raised into the host
"""

from __future__ import annotations


class EmitterError(Exception):
    """Root of every error raised by the emitters package."""


class ConfigError(EmitterError):
    """A setting is out of range or unparsable; the message names the setting."""


class SinkError(EmitterError):
    """A batch could not be delivered; the flusher keeps it and retries with back-off."""
