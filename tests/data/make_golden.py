"""Writes the golden encoded samples. Run only when a version is added: existing files must never change.

    python tests/data/make_golden.py
"""

from __future__ import annotations

from pathlib import Path

from schemas.codec import pack_envelope

HERE = Path(__file__).parent
T = 1_790_000_000.25
ENVELOPE = dict(producer_id="host-a:41:parser:00c0ffee", seq=7, sent_at_s=T + 1, component="parser", pid=41, host="host-a", dropped_total=3, invalid_total=1)

GOLDEN = {
    "batch_v1_current.msgpack": [
        [1, 2, T, "parse_file", 12.5, True, None, 3, 1, {"calls_detected": 12}],
        [1, 2, T + 0.5, "parse_file", 40.0, False, "SyntaxError", 0, 0, {}],
        [2, 1, T + 0.6, "files_processed", 1],
        [3, 1, T + 0.7, "process", 12.5, 104_857_600, 8_589_934_592, 4096, 8192, 9, 17],
        [4, 1, T + 0.8, "started", {"workers": 4, "mode": "incremental", "debug": False, "ratio": 0.5, "path": None}],
    ],
    # The current versions since issue 7: network counters on samples, declared dependencies, in-flight gauges.
    "batch_v2_current.msgpack": [
        [1, 2, T, "parse_file", 12.5, True, None, 3, 1, {"calls_detected": 12}],
        [3, 2, T + 0.7, "host", 12.5, 104_857_600, 8_589_934_592, 4096, 8192, 0, 0, 1_000, 2_000, 10, 20],
        [3, 2, T + 0.7, "process", 12.5, 104_857_600, 8_589_934_592, 4096, 8192, 9, 17, None, None, None, None],
        [4, 2, T + 0.8, "started", {"workers": 4}, ["tree_sitter_manager"]],
        [4, 2, T + 0.85, "heartbeat", {}, None],
        [6, 1, T + 0.9, "parse_file", 3, 5],
    ],
    "batch_v1_operation_v1.msgpack": [
        [1, 1, T, "resolve_breadcrumb", 5.25, True, 1, 0],
        [1, 1, T + 1, "resolve_breadcrumb", 7.0, False, 0, 1],
    ],
}

if __name__ == "__main__":
    for name, rows in GOLDEN.items():
        (HERE / name).write_bytes(pack_envelope(**ENVELOPE, rows=rows))  # type: ignore[arg-type]
