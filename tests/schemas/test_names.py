from __future__ import annotations

import pytest

from schemas import Names
from schemas.names import DERIVED_STREAMS, kafka_servers


def test_public_stream_names_follow_the_prefix() -> None:
    names = Names("acme")
    assert [names.stream(s) for s in ("events", *DERIVED_STREAMS, "dead")] == [
        "acme:events", "acme:stats", "acme:stats_1m", "acme:alerts", "acme:health", "acme:forecasts", "acme:recommendations", "acme:actions", "acme:dead",
    ]  # fmt: skip
    assert Names().events == "pipepulse:events"
    assert Names().dead == "pipepulse:dead"
    assert Names().group("stats") == "pipepulse:group:stats"
    assert Names("acme").latest("stats") == "acme:latest:stats"
    assert Names("acme").checkpoint("stats") == "acme:checkpoint:stats"
    assert Names("acme").lease("ticker") == "acme:lease:ticker"
    assert Names("acme").runtime == "acme:runtime"


def test_derived_history_caps_are_durations() -> None:
    assert Names().maxlen("stats") * 10 == 6 * 3600  # 10 s windows for 6 hours
    assert Names().maxlen("stats_1m") == 7 * 24 * 60  # 1 m roll-ups for 7 days


@pytest.mark.parametrize("prefix", ["", "has space"])
def test_a_bad_prefix_is_refused(prefix: str) -> None:
    with pytest.raises(ValueError, match="prefix"):
        Names(prefix)


def test_an_unknown_stream_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown stream"):
        Names().stream("evnets")


def test_kafka_topics_follow_the_prefix_and_kafkas_rules() -> None:
    assert Names().topic("events") == "pipepulse.events"
    assert Names("acme-prod").topic("ordered") == "acme-prod.ordered"
    with pytest.raises(ValueError, match="Kafka topic"):
        Names("acme:prod").topic("events")  # ':' is fine in a Redis key, not in a topic
    with pytest.raises(ValueError, match="unknown topic"):
        Names().topic("stats")  # derived streams stay in Redis


def test_a_kafka_url_names_its_servers_for_the_emitters_and_the_engine_alike() -> None:
    assert kafka_servers("kafka://a:9092,b:9092") == kafka_servers("kafka://a:9092,b:9092/") == "a:9092,b:9092"
    for bad in ("kafka://", "kafka://host:9092/topic", "redis://host:6379", "host:9092"):
        with pytest.raises(ValueError):
            kafka_servers(bad)
