"""Exceptions of the event contract.

SchemaError
 └── RejectedEntry   an encoded entry or event that the codec refuses, with a reason code
"""

from __future__ import annotations

from typing import Final

# Every reason the codec can give, so that dead letters and counters use one vocabulary.
REASONS: Final = frozenset(
    {
        "oversized_entry",
        "malformed_msgpack",
        "wrong_type",
        "not_finite",
        "negative_value",
        "negative_duration",
        "timestamp_out_of_range",
        "unknown_type",
        "unknown_version",
        "missing_field",
        "oversized_string",
        "too_many_items",
    }
)


class SchemaError(Exception):
    """Root of every error raised by the schemas package."""


class RejectedEntry(SchemaError):
    """Input that does not satisfy the contract; `reason` is one of REASONS."""

    def __init__(self, reason: str, detail: str) -> None:
        if reason not in REASONS:
            raise ValueError(f"unknown rejection reason {reason!r}")
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail
