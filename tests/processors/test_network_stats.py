"""Host network rates (SystemSample v2 counters): in the statistics, across checkpoints, and on /metrics."""

from __future__ import annotations

import json
from typing import Any

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from schemas.events import TAG_SYSTEM

from processors import exposition
from processors.contract import Output
from processors.report import system_stats
from processors.stats import StatsProcessor
from processors.summary import SystemSummary

from tests.processors.helpers import T0, batch, items, latest_values, stream_outputs, system, tick

NET_RATES = ("net_sent_bytes_per_s", "net_recv_bytes_per_s", "net_sent_packets_per_s", "net_recv_packets_per_s")


def sample_v2(ts: float, net: tuple[int, int, int, int] | None, *, scope: str = "host", read: int = 0) -> list[Any]:
    """A v2 system row; `net` is (sent bytes, received bytes, sent packets, received packets), None where not measured."""
    sent_bytes, recv_bytes, sent_packets, recv_packets = net or (None, None, None, None)
    return [TAG_SYSTEM, 2, ts, scope, 20.0, 4000, 10_000, read, 0, 4, 3, sent_bytes, recv_bytes, sent_packets, recv_packets]


def first_window(outputs: list[Output]) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(stream_outputs(outputs)[0]["json"])
    return document


def run(*rows: list[Any], host: str = "h1") -> list[Output]:
    return StatsProcessor().apply(items([batch(list(rows), seq=1, host=host), tick(T0 + 10.25)]))


def test_host_rates_come_from_the_first_and_last_sample_of_the_window() -> None:
    document = first_window(run(sample_v2(T0 + 1, (1_000, 500, 10, 20), read=0), sample_v2(T0 + 3, (3_000, 900, 30, 40)), sample_v2(T0 + 5, (9_000, 4_500, 50, 120), read=400)))
    host = document["hosts"]["h1"]
    assert {name: host[name] for name in (*NET_RATES, "read_bytes_per_s", "write_bytes_per_s")} == {
        "net_sent_bytes_per_s": 2_000.0,
        "net_recv_bytes_per_s": 1_000.0,
        "net_sent_packets_per_s": 10.0,
        "net_recv_packets_per_s": 25.0,
        "read_bytes_per_s": 100.0,
        "write_bytes_per_s": 0.0,
    }


def test_unmeasured_counters_give_no_rate_rather_than_zero() -> None:
    v1_host = [system(T0 + 1, scope="host", read=0), system(T0 + 5, scope="host", read=400)]
    v2_process = [sample_v2(T0 + 1, None, scope="process"), sample_v2(T0 + 5, None, scope="process")]
    v1_then_v2 = [system(T0 + 1, scope="host"), sample_v2(T0 + 5, (9_000, 4_500, 50, 120))]
    document = first_window(run(*v1_host, *v2_process))
    host, process = document["hosts"]["h1"], document["components"]["parser"]["processes"]["100@h1"]
    assert [host[name] for name in NET_RATES] == [None] * 4
    assert [process[name] for name in NET_RATES] == [None] * 4
    assert host["read_bytes_per_s"] == 100.0  # only the network counters are unknown
    assert [first_window(run(*v1_then_v2))["hosts"]["h1"][name] for name in NET_RATES] == [None] * 4


def test_a_counter_reset_gives_no_rate_rather_than_a_negative_one() -> None:
    rebooted = first_window(run(sample_v2(T0 + 1, (1_000_000, 500, 5_000, 20)), sample_v2(T0 + 5, (4_000, 4_500, 10, 120))))["hosts"]["h1"]
    assert {name: rebooted[name] for name in NET_RATES} == {"net_sent_bytes_per_s": None, "net_recv_bytes_per_s": 1_000.0, "net_sent_packets_per_s": None, "net_recv_packets_per_s": 25.0}


def test_a_single_sample_gives_no_rate() -> None:
    host = first_window(run(sample_v2(T0 + 1, (1_000, 500, 10, 20))))["hosts"]["h1"]
    assert [host[name] for name in NET_RATES] == [None] * 4


def test_a_checkpoint_from_before_the_network_counters_restores_with_them_unknown() -> None:
    old = SystemSummary.from_wire([2, 60.0, 40.0, 3000, [T0 + 1, 0, 0], [T0 + 5, 400, 800], [3000, 10_000, 4, 3]])
    stats = system_stats(old)
    assert (stats["read_bytes_per_s"], stats["write_bytes_per_s"], stats["cpu_percent"]) == (100.0, 200.0, 30.0)
    assert [stats[name] for name in NET_RATES] == [None] * 4
    newer = SystemSummary()
    newer.add(T0 + 9, {"cpu_percent": 10.0, "rss_bytes": 2000, "memory_total_bytes": 10_000, "read_bytes": 800, "write_bytes": 800, "threads": 4, "open_files": 3, "net_sent_bytes": 9_000, "net_recv_bytes": 1, "net_sent_packets": 2, "net_recv_packets": 3})
    old.merge(newer)
    merged = system_stats(old)
    assert (merged["read_bytes_per_s"], merged["samples"]) == (100.0, 3)  # the old first mark still counts for read bytes
    assert [merged[name] for name in NET_RATES] == [None] * 4  # but knew nothing of the network
    assert SystemSummary.from_wire(old.to_wire()) == old


def test_the_stats_processor_resumes_from_an_old_checkpoint() -> None:
    first = StatsProcessor()
    first.apply(items([batch([system(T0 + 1, scope="host", read=0)], seq=1)]))
    parts = first.snapshot()
    for key, value in parts.items():
        if key[0] == "w" and key[3] == "host":
            value[4], value[5] = value[4][:3], value[5][:3]  # the (timestamp, read, write) marks of earlier checkpoints
    resumed = StatsProcessor()
    resumed.restore(parts)
    host = first_window(resumed.apply(items([batch([sample_v2(T0 + 5, (9_000, 4_500, 50, 120), read=400)], seq=2), tick(T0 + 10.25)])))["hosts"]["h1"]
    assert host["read_bytes_per_s"] == 100.0
    assert [host[name] for name in NET_RATES] == [None] * 4


def test_metrics_expose_each_hosts_network_rates_by_direction() -> None:
    outputs = StatsProcessor().apply(
        items([
            batch([sample_v2(T0 + 1, (1_000, 500, 10, 20)), sample_v2(T0 + 5, (9_000, 4_500, 50, 120))], seq=1, host="h1"),
            batch([system(T0 + 1, scope="host"), system(T0 + 5, scope="host")], seq=1, producer="p2", host="h2"),
            tick(T0 + 10.25),
        ])
    )  # fmt: skip
    stats = latest_values(outputs, "stats")
    text = generate_latest(exposition.registry(lambda: {"stats": stats})).decode()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    samples = {(s.name, s.labels["host"], s.labels["direction"]): s.value for name in ("pipepulse_host_network_bytes_per_second", "pipepulse_host_network_packets_per_second") for s in families[name].samples}
    assert samples == {
        ("pipepulse_host_network_bytes_per_second", "h1", "sent"): 2_000.0,
        ("pipepulse_host_network_bytes_per_second", "h1", "received"): 1_000.0,
        ("pipepulse_host_network_packets_per_second", "h1", "sent"): 10.0,
        ("pipepulse_host_network_packets_per_second", "h1", "received"): 25.0,
    }  # h2 measured no network: no series rather than 0
    assert families["pipepulse_host_network_bytes_per_second"].documentation.startswith("Bytes per second")
