"""The event contract: event types, the batch envelope, the codec and the stream names.

Imports nothing else of pipepulse, and importing it does no work.
"""

from schemas.cardinality import OVERFLOW_NAME, CardinalityGuard
from schemas.checks import Limits
from schemas.codec import Decoded, RejectedEvent, decode_batch, encode_batch
from schemas.errors import REASONS, RejectedEntry, SchemaError
from schemas.events import AlertCommand, Batch, CountEvent, Event, InProgressSample, LifecycleEvent, OperationEvent, SystemSample
from schemas.names import DEFAULT_PREFIX, Names

__all__ = [
    "AlertCommand",
    "Batch",
    "CardinalityGuard",
    "CountEvent",
    "DEFAULT_PREFIX",
    "Decoded",
    "Event",
    "InProgressSample",
    "LifecycleEvent",
    "Limits",
    "Names",
    "OVERFLOW_NAME",
    "OperationEvent",
    "REASONS",
    "RejectedEntry",
    "RejectedEvent",
    "SchemaError",
    "SystemSample",
    "decode_batch",
    "encode_batch",
]
