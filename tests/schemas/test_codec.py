from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas import (
    AlertCommand,
    InProgressSample,
    REASONS,
    Batch,
    CountEvent,
    LifecycleEvent,
    Limits,
    OperationEvent,
    RejectedEntry,
    SystemSample,
    decode_batch,
    encode_batch,
)
from schemas.codec import pack, pack_envelope

DATA = Path(__file__).parent.parent / "data"
T = 1_790_000_000.25
SHARED = dict(component="parser", pid=41, host="host-a")
ENVELOPE: dict[str, Any] = dict(producer_id="host-a:41:parser:00c0ffee", seq=7, sent_at_s=T + 1, dropped_total=3, invalid_total=1, **SHARED)

EVENTS = (
    OperationEvent(timestamp_s=T, operation="parse_file", duration_ms=12.5, ok=True, cache_hits=3, cache_misses=1, counters={"calls_detected": 12}, **SHARED),
    OperationEvent(timestamp_s=T + 0.5, operation="parse_file", duration_ms=40.0, ok=False, error_type="SyntaxError", **SHARED),
    CountEvent(timestamp_s=T + 0.6, name="files_processed", value=1, **SHARED),
    SystemSample(
        timestamp_s=T + 0.7, scope="process", cpu_percent=12.5, rss_bytes=104_857_600, memory_total_bytes=8_589_934_592,
        read_bytes=4096, write_bytes=8192, threads=9, open_files=17, **SHARED,
    ),
    LifecycleEvent(timestamp_s=T + 0.8, kind="started", config={"workers": 4, "mode": "incremental", "debug": False, "ratio": 0.5, "path": None}, **SHARED),
)
BATCH = Batch(**ENVELOPE, events=EVENTS)  # the v1 golden sample's content, upcast
EVENTS_V2 = (
    EVENTS[0],
    SystemSample(
        timestamp_s=T + 0.7, scope="host", cpu_percent=12.5, rss_bytes=104_857_600, memory_total_bytes=8_589_934_592, read_bytes=4096, write_bytes=8192,
        threads=0, open_files=0, net_sent_bytes=1_000, net_recv_bytes=2_000, net_sent_packets=10, net_recv_packets=20, **SHARED,
    ),
    EVENTS[3],
    LifecycleEvent(timestamp_s=T + 0.8, kind="started", config={"workers": 4}, depends_on=("tree_sitter_manager",), **SHARED),
    LifecycleEvent(timestamp_s=T + 0.85, kind="heartbeat", **SHARED),
    InProgressSample(timestamp_s=T + 0.9, operation="parse_file", in_progress=3, peak=5, **SHARED),
)
COMMAND = AlertCommand(timestamp_s=T + 0.9, action="silence", target="5f3a9c", by="ana", reason="deploy", expires_in_s=7200.0, matchers={"component": "=parser", "severity": "=~warn.*"}, **SHARED)


def envelope_with(rows: list[Any], **changes: Any) -> bytes:
    return pack_envelope(**{**ENVELOPE, **changes}, rows=rows)


@pytest.mark.parametrize("event", (*EVENTS, *EVENTS_V2, COMMAND), ids=lambda e: type(e).__name__)
def test_every_event_type_round_trips(event: Any) -> None:
    batch = Batch(**ENVELOPE, events=(event,))
    decoded = decode_batch(encode_batch(batch))
    assert decoded.batch == batch
    assert decoded.rejected == ()


def test_golden_v1_sample_decodes_upcast() -> None:
    """v1 system samples measured no network and v1 lifecycle events declared no dependencies: None, not zero."""
    decoded = decode_batch((DATA / "batch_v1_current.msgpack").read_bytes())
    assert decoded.batch == BATCH
    sample, started = decoded.batch.events[3:5]
    assert isinstance(sample, SystemSample) and sample.net_sent_bytes is None
    assert isinstance(started, LifecycleEvent) and started.depends_on is None


def test_golden_current_sample_decodes_and_encodes_to_the_same_bytes() -> None:
    golden = (DATA / "batch_v2_current.msgpack").read_bytes()
    assert decode_batch(golden).batch == Batch(**ENVELOPE, events=EVENTS_V2)
    assert encode_batch(Batch(**ENVELOPE, events=EVENTS_V2)) == golden


def test_golden_operation_v1_is_upcast() -> None:
    decoded = decode_batch((DATA / "batch_v1_operation_v1.msgpack").read_bytes())
    assert decoded.batch.events == (
        OperationEvent(timestamp_s=T, operation="resolve_breadcrumb", duration_ms=5.25, ok=True, cache_hits=1, cache_misses=0, **SHARED),
        OperationEvent(timestamp_s=T + 1, operation="resolve_breadcrumb", duration_ms=7.0, ok=False, error_type="unknown", cache_hits=0, cache_misses=1, **SHARED),
    )


GOOD_OP = [1, 2, T, "parse", 1.0, True, None, 0, 0, None]


def op_with(index: int, value: Any) -> list[Any]:
    row = list(GOOD_OP)
    row[index] = value
    return row


EVENT_REJECTIONS = [
    ("wrong_type", op_with(3, 42)),
    ("wrong_type", op_with(5, 1)),
    ("wrong_type", op_with(7, 1.5)),
    ("wrong_type", "not a row"),
    ("not_finite", op_with(4, math.nan)),
    ("not_finite", op_with(4, math.inf)),
    ("not_finite", op_with(9, {"calls": math.nan})),
    ("negative_duration", op_with(4, -0.001)),
    ("negative_value", op_with(7, -1)),
    ("timestamp_out_of_range", op_with(2, 0)),
    ("timestamp_out_of_range", op_with(2, 253_402_300_800.0)),  # year 9999
    ("unknown_type", [99, 1, T]),
    ("unknown_version", [1, 9, T]),
    ("missing_field", [1, 2, T, "parse", 1.0]),
    ("oversized_string", op_with(3, "x" * 201)),
    ("too_many_items", op_with(9, {f"c{i}": 1 for i in range(65)})),
    ("wrong_type", [4, 1, T, "exploded", {}]),
    ("wrong_type", [4, 1, T, "registered", {}]),  # a v2 kind in a v1 row
    ("wrong_type", [4, 2, T, "registered", {}, "tree_sitter_manager"]),
    ("wrong_type", [4, 2, T, "registered", {}, ["ok", 7]]),
    ("oversized_string", [4, 2, T, "registered", {}, ["x" * 201]]),
    ("too_many_items", [4, 2, T, "registered", {}, [f"c{i}" for i in range(65)]]),
    ("negative_value", [3, 2, T, "host", 1.0, 1, 1, 0, 0, 0, 0, -1, None, None, None]),
    ("wrong_type", [3, 2, T, "host", 1.0, 1, 1, 0, 0, 0, 0, None, "1", None, None]),
    ("negative_value", [6, 1, T, "parse", -1, 0]),
    ("wrong_type", [6, 1, T, "parse", 1.5, 2]),
    ("wrong_type", [5, 1, T, "delete_everything", "x", "", "", 0.0, {}]),
    ("negative_value", [5, 1, T, "ack", "5f3a9c", "", "", -1.0, {}]),
    ("wrong_type", [5, 1, T, "silence", "s1", "", "", 60.0, {"component": ["parser"]}]),
]


@pytest.mark.parametrize("reason,row", EVENT_REJECTIONS)
def test_a_bad_event_is_rejected_with_its_reason_and_its_neighbours_survive(reason: str, row: Any) -> None:
    decoded = decode_batch(envelope_with([GOOD_OP, row, GOOD_OP]))
    assert [(r.index, r.reason) for r in decoded.rejected] == [(1, reason)]
    assert decoded.rejected[0].row == pack(row)  # the dead letter keeps the event as it came
    assert len(decoded.batch.events) == 2


ENTRY_REJECTIONS = [
    ("oversized_entry", b"\x00" * (Limits().max_entry_bytes + 1)),
    ("malformed_msgpack", b"\xc1"),
    ("malformed_msgpack", envelope_with([GOOD_OP])[:-3]),  # truncated
    ("malformed_msgpack", envelope_with([GOOD_OP]) + b"\x00"),  # trailing bytes
    ("malformed_msgpack", b"\xdd\xff\xff\xff\xff"),  # declares a 4-billion-item array
    ("malformed_msgpack", b"\x91" * 100_000 + b"\x00"),  # nested 100,000 deep
    ("malformed_msgpack", pack({1: 2})),  # non-string map key
    ("malformed_msgpack", b"\xa2\xff\xfe"),  # invalid UTF-8
    ("wrong_type", pack([1, 2, 3])),
    ("unknown_version", pack({**ENVELOPE, "v": 2, "events": []})),
    ("missing_field", pack({"v": 1, "producer_id": "p"})),
    ("wrong_type", envelope_with([], seq="7")),
    ("negative_value", envelope_with([], seq=-1)),
    ("oversized_string", envelope_with([], producer_id="p" * 201)),
    ("timestamp_out_of_range", envelope_with([], sent_at_s=0)),
    ("not_finite", envelope_with([], sent_at_s=math.nan)),
    ("too_many_items", envelope_with([GOOD_OP] * (Limits().max_events + 1))),
    ("wrong_type", pack({**ENVELOPE, "v": 1, "events": {"a": 1}})),
]


@pytest.mark.parametrize("reason,data", ENTRY_REJECTIONS, ids=[f"{r}-{i}" for i, (r, _) in enumerate(ENTRY_REJECTIONS)])
def test_a_bad_entry_is_rejected_whole_with_its_reason(reason: str, data: bytes) -> None:
    with pytest.raises(RejectedEntry) as caught:
        decode_batch(data)
    assert caught.value.reason == reason


def test_every_reason_is_exercised() -> None:
    assert {r for r, _ in EVENT_REJECTIONS} | {r for r, _ in ENTRY_REJECTIONS} == REASONS


def test_html_in_names_is_carried_verbatim_not_interpreted() -> None:
    name = "<script>alert(1)</script>"
    decoded = decode_batch(envelope_with([op_with(3, name)], component=name))
    assert decoded.batch.events[0].component == name
    assert decoded.batch.events[0].operation == name  # type: ignore[union-attr]


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=512))
def test_fuzzed_bytes_decode_or_are_rejected_clearly(data: bytes) -> None:
    try:
        decode_batch(data)
    except RejectedEntry as exc:
        assert exc.reason in REASONS


values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**63), max_value=2**64 - 1) | st.floats() | st.text(max_size=30) | st.binary(max_size=10),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner, max_size=5),
    max_leaves=20,
)


@settings(max_examples=500, deadline=None)
@given(rows=st.lists(st.one_of(values, st.tuples(st.sampled_from([1, 2, 3, 4]), st.sampled_from([1, 2]), values).map(list)), max_size=5), envelope_field=st.sampled_from(sorted(ENVELOPE)), envelope_value=values)
def test_fuzzed_structures_decode_or_are_rejected_clearly(rows: list[Any], envelope_field: str, envelope_value: Any) -> None:
    for data in (envelope_with(rows), envelope_with([], **{envelope_field: envelope_value})):
        try:
            decoded = decode_batch(data)
        except RejectedEntry as exc:
            assert exc.reason in REASONS
        else:
            assert len(decoded.batch.events) + len(decoded.rejected) == len(msgpack.unpackb(data)["events"])
            assert all(r.reason in REASONS for r in decoded.rejected)
