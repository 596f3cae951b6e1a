"""Exceptions of the processing side.

ProcessorError
 ├── ConfigError        a bad setting; the message names the environment variable or flag
 └── ServerStartError   the embedded server could not be started
"""

from __future__ import annotations


class ProcessorError(Exception):
    """Root of every error raised by the processors package."""


class ConfigError(ProcessorError):
    """A setting is out of range or unparsable."""


class ServerStartError(ProcessorError):
    """No Redis-compatible server binary, or it did not answer in time."""
