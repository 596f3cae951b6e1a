"""Deduplication by (producer_id, seq) and gap counting."""

from __future__ import annotations

import pytest

from processors.ledger import FORGET_AFTER_S, Ledger

CASES = {
    "in order": ([0, 1, 2], [0, 0, 0], 0),
    "a retried batch is a duplicate": ([0, 1, 1, 2], [0, 0, None, 0], 1),
    "a gap counts the missing batches": ([0, 1, 4], [0, 0, 2], 0),
    "a first batch after lost ones counts them": ([3], [3], 0),
    "an old retry after newer ones is a duplicate": ([0, 1, 2, 0], [0, 0, 0, None], 1),
}


@pytest.mark.parametrize("case", CASES)
def test_admit(case: str) -> None:
    seqs, expected, duplicates = CASES[case]
    ledger = Ledger()
    assert [ledger.admit("p", seq, 1.0 + seq) for seq in seqs] == expected
    assert ledger.counters["duplicate_batches_total"] == duplicates
    assert ledger.counters["missing_batches_total"] == sum(m for m in expected if m)


def test_snapshot_restore_keeps_marks_and_counters() -> None:
    ledger = Ledger()
    for seq in (0, 1, 5):
        ledger.admit("p", seq, 1.0)
    restored = Ledger.restore(ledger.snapshot())
    assert restored.admit("p", 5, 2.0) is None
    assert restored.admit("p", 6, 2.0) == 0
    assert restored.counters["missing_batches_total"] == 3


def test_changes_add_up_to_the_snapshot() -> None:
    ledger = Ledger()
    parts: dict[object, object] = {}
    for i in range(3000):
        ledger.admit(f"p{i}", 0, float(i * 60))  # old producers are forgotten as new ones arrive
        written, deleted = ledger.take_changes()
        for key in deleted:
            parts.pop(key)
        parts.update(written)
    assert parts == ledger.snapshot()
    assert len(ledger.marks) < 3000 and all(sent >= 3000 * 60 - FORGET_AFTER_S - 1024 * 60 for _, sent in ledger.marks.values())
