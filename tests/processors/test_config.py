"""Settings of the pipepulse commands come from PIPEPULSE_* variables; a bad one is named."""

from __future__ import annotations

from pathlib import Path

import pytest

from processors.config import Config
from processors.errors import ConfigError
from processors.rules import RuleError


def test_defaults_and_overrides() -> None:
    assert (Config.from_env({}).window_s, Config.from_env({}).grace_s) == (10, 0.25)
    config = Config.from_env({"PIPEPULSE_WINDOW_S": "5", "PIPEPULSE_GRACE_S": "1.5", "PIPEPULSE_TICK_INTERVAL_S": "0.5", "PIPEPULSE_LEASE_TTL_S": "2"})
    assert (config.stats_settings.window_s, config.stats_settings.grace_s) == (5, 1.5)
    assert (config.runtime_settings.tick_interval_s, config.runtime_settings.lease_ttl_s) == (0.5, 2.0)


def test_alerting_settings(tmp_path: Path) -> None:
    rules = tmp_path / "rules.toml"
    rules.write_text('[[rules]]\nname = "cpu_saturation"\nenabled = false\n')
    config = Config.from_env({"PIPEPULSE_RULES_FILE": str(rules), "PIPEPULSE_ALERT_WEBHOOK_URL": "http://127.0.0.1:9/hook", "PIPEPULSE_STALE_AFTER_S": "4"})
    names = {rule.name for rule in config.monitor_settings().rules}
    assert "cpu_saturation" not in names and "max_error_rate" in names
    assert (config.alert_webhook_url, config.stats_settings.stale_after_s) == ("http://127.0.0.1:9/hook", 4.0)
    assert Config.from_env({"PIPEPULSE_RULES_FILE": "", "PIPEPULSE_ALERT_WEBHOOK_URL": ""}).alert_webhook_url is None  # empty means unset (compose)
    with pytest.raises(RuleError, match="cannot read rules file"):
        Config.from_env({"PIPEPULSE_RULES_FILE": str(tmp_path / "missing.toml")}).monitor_settings()


@pytest.mark.parametrize(
    ("variable", "value"),
    [("PIPEPULSE_WINDOW_S", "7"), ("PIPEPULSE_WINDOW_S", "ten"), ("PIPEPULSE_GRACE_S", "-1"), ("PIPEPULSE_GRACE_S", "nan"), ("PIPEPULSE_TICK_INTERVAL_S", "0"), ("PIPEPULSE_LEASE_TTL_S", "x"), ("PIPEPULSE_STALE_AFTER_S", "0.5"), ("PIPEPULSE_OPTIMIZER_MODE", "off"), ("PIPEPULSE_ENGINE", "kafka"), ("PIPEPULSE_KAFKA_PARTITIONS", "0")],
)
def test_a_bad_value_names_its_variable(variable: str, value: str) -> None:
    with pytest.raises(ConfigError, match=variable):
        Config.from_env({variable: value})


def test_optimizer_settings() -> None:
    config = Config.from_env({"PIPEPULSE_OPTIMIZER_MODE": "dry_run", "PIPEPULSE_OPTIMIZER_REDIS_URL": "redis://optimizer:s@127.0.0.1:6390/0"})
    assert (config.optimizer_mode, config.optimizer_redis_url) == ("dry_run", "redis://optimizer:s@127.0.0.1:6390/0")
    assert Config.from_env({}).optimizer_mode is None


def test_acks_and_silences_go_to_kafka_under_the_faust_engine_only() -> None:
    """A Kafka URL alone (docker-compose sets one for both profiles) must not move commands off the Redis log."""
    assert Config.from_env({"PIPEPULSE_KAFKA_URL": "kafka://k:9092"}).command_kafka_url is None
    assert Config.from_env({"PIPEPULSE_KAFKA_URL": "kafka://k:9092", "PIPEPULSE_ENGINE": "faust"}).command_kafka_url == "kafka://k:9092"
