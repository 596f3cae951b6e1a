"""Settings of the pipepulse commands come from PIPEPULSE_* variables; a bad one is named."""

from __future__ import annotations

import pytest

from processors.config import Config
from processors.errors import ConfigError


def test_defaults_and_overrides() -> None:
    assert (Config.from_env({}).window_s, Config.from_env({}).grace_s) == (10, 0.25)
    config = Config.from_env({"PIPEPULSE_WINDOW_S": "5", "PIPEPULSE_GRACE_S": "1.5", "PIPEPULSE_TICK_INTERVAL_S": "0.5", "PIPEPULSE_LEASE_TTL_S": "2"})
    assert (config.stats_settings.window_s, config.stats_settings.grace_s) == (5, 1.5)
    assert (config.runtime_settings.tick_interval_s, config.runtime_settings.lease_ttl_s) == (0.5, 2.0)


@pytest.mark.parametrize(
    ("variable", "value"),
    [("PIPEPULSE_WINDOW_S", "7"), ("PIPEPULSE_WINDOW_S", "ten"), ("PIPEPULSE_GRACE_S", "-1"), ("PIPEPULSE_GRACE_S", "nan"), ("PIPEPULSE_TICK_INTERVAL_S", "0"), ("PIPEPULSE_LEASE_TTL_S", "x")],
)
def test_a_bad_value_names_its_variable(variable: str, value: str) -> None:
    with pytest.raises(ConfigError, match=variable):
        Config.from_env({variable: value})
