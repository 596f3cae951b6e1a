from __future__ import annotations

import threading

from schemas import OVERFLOW_NAME, CardinalityGuard


def test_a_hundred_thousand_names_are_capped_with_an_explicit_overflow() -> None:
    guard = CardinalityGuard(max_names=100)
    admitted = [guard.admit(f"user-{i}") for i in range(100_000)]
    assert admitted[:100] == [f"user-{i}" for i in range(100)]
    assert set(admitted[100:]) == {OVERFLOW_NAME}
    assert guard.overflow_total == 99_900
    assert guard.distinct == 100
    assert guard.admit("user-5") == "user-5"  # a known name stays itself


def test_concurrent_admission_never_exceeds_the_cap() -> None:
    guard = CardinalityGuard(max_names=50)

    def admit(offset: int) -> None:
        for i in range(1_000):
            guard.admit(f"n{offset}-{i}")

    threads = [threading.Thread(target=admit, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert guard.distinct == 50
    assert guard.overflow_total == 4_000 - 50
