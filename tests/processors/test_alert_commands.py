"""Acknowledgements, silences and escalation: command events in the log, judged by the alert events that follow."""

from __future__ import annotations

import dataclasses
from typing import Any

from schemas.alerts import fingerprint

from processors.contract import Output
from processors.ledger import Ledger
from processors.monitor import MonitorProcessor, MonitorSettings
from processors.rules import load_rules

from tests.processors.alerting import alert_events, entries, run, transitions
from tests.processors.helpers import T0, command, items, latest_values, op

ERRORS = fingerprint("max_error_rate", {"component": "parser"})


def errors(rate: float, second: int, n: int = 100) -> list[list[Any]]:
    return [op(T0 + second + (i + 0.5) / n, ok=i >= rate * n, error_type="E") for i in range(n)]


def script(rates: dict[int, float], commands: dict[int, list[list[Any]]]) -> Any:
    """The parser's error rate from each listed second on, and operator commands at given seconds."""

    def series(second: int) -> dict[str, list[list[Any]]]:
        rate = [r for start, r in sorted(rates.items()) if second >= start][-1]
        out = {"parser": errors(rate, second)}
        if second in commands:
            out["pipepulse-cli"] = commands[second]
        return out

    return series


def escalating_monitor(escalate_after_s: float) -> MonitorProcessor:
    rules = tuple(dataclasses.replace(r, escalate_after_s=escalate_after_s) if r.name == "max_error_rate" else r for r in load_rules())
    return MonitorProcessor(MonitorSettings(rules=rules))


def test_an_ack_is_recorded_with_its_reason_and_expires() -> None:
    outputs = run(script({0: 0.10}, {3: [command(T0 + 3.5, "ack", ERRORS, by="ana", reason="deploy in progress", expires_in_s=20)]}), 30)
    # A command takes effect at stream time: the parser's batch of that second (up to x.995) came first.
    assert transitions(outputs, "max_error_rate") == [(0.995, "firing", "error"), (3.995, "acked", "error"), (24.0, "unacked", "error")]
    acked = [e for e in alert_events(outputs) if e["transition"] == "acked"][0]
    assert (acked["acked_by"], acked["ack_reason"], acked["ack_until_s"], acked["notify"]) == ("ana", "deploy in progress", T0 + 23.995, False)


def test_an_ack_is_dropped_when_the_alert_worsens() -> None:
    outputs = run(script({0: 0.10, 5: 0.60}, {3: [command(T0 + 3.5, "ack", ERRORS, expires_in_s=3600)]}), 10)
    assert transitions(outputs, "max_error_rate") == [
        (0.995, "firing", "error"),
        (3.995, "acked", "error"),
        (7.995, "severity_changed", "critical"),  # three seconds of 60 % lift the 10 s rate past 25 %
        (7.995, "unacked", "critical"),
        (7.995, "escalated", "critical"),
    ]
    assert latest_values(outputs, "alerts")[ERRORS]["acked_by"] is None


def test_unack_and_commands_for_unknown_alerts() -> None:
    outputs = run(
        script({0: 0.10}, {2: [command(T0 + 2.5, "ack", ERRORS), command(T0 + 2.6, "ack", "feedfacefeedface")], 4: [command(T0 + 4.5, "unack", ERRORS)]}),
        6,
    )
    assert transitions(outputs, "max_error_rate") == [(0.995, "firing", "error"), (2.995, "acked", "error"), (4.995, "unacked", "error")]


def test_commands_are_not_telemetry() -> None:
    outputs = run(script({0: 0.0}, {2: [command(T0 + 2.5, "ack", ERRORS)]}), 12)
    assert "pipepulse-cli" not in latest_values(outputs, "stats_live")
    assert "pipepulse-cli" not in latest_values(outputs, "stats")


def test_a_silence_mutes_matching_alerts_until_it_expires() -> None:
    silence = command(T0 + 0.5, "silence", "s1", reason="maintenance", expires_in_s=10, matchers={"component": "parser", "severity": "=~warning|error"})
    outputs = run(script({0: 0.0, 1: 0.10}, {0: [silence]}), 15)
    events = alert_events(outputs, "max_error_rate")
    assert [(e["transition"], e["notify"], e["silenced_by"]) for e in events] == [("firing", False, ["s1"]), ("unsilenced", False, [])]
    assert events[1]["at_s"] == T0 + 11.0  # the first tick at or after the expiry (0.995 + 10)
    silences = latest_values(outputs, "silences")
    assert silences == {"s1": None}


def test_a_silence_that_matches_nothing_changes_nothing() -> None:
    cases = [{"component": "cache"}, {"component": "!=parser"}, {"severity": "=~crit.*"}]
    for matchers in cases:
        silence = command(T0 + 0.5, "silence", "s1", expires_in_s=100, matchers=matchers)
        events = alert_events(run(script({0: 0.10}, {0: [silence]}), 5), "max_error_rate")
        assert [(e["transition"], e["notify"]) for e in events] == [("firing", True)], matchers


def test_silencing_a_firing_alert_and_ending_the_silence_early() -> None:
    commands = {3: [command(T0 + 3.5, "silence", "s1", matchers={"alertname": "max_error_rate"}, expires_in_s=100)], 6: [command(T0 + 6.5, "expire_silence", "s1")]}
    events = alert_events(run(script({0: 0.10}, commands), 8), "max_error_rate")
    assert [(e["transition"], round(e["at_s"] - T0, 3), e["notify"]) for e in events] == [("firing", 0.995, True), ("silenced", 3.995, False), ("unsilenced", 6.995, False)]


def test_an_unacknowledged_alert_escalates_and_an_acked_one_does_not() -> None:
    processor = escalating_monitor(escalate_after_s=10)
    outputs = processor.apply(items(entries(script({0: 0.10}, {}), 45)))
    assert [t for t in transitions(outputs, "max_error_rate") if t[1] == "escalated"] == [(11.0, "escalated", "error"), (21.0, "escalated", "error"), (31.0, "escalated", "error")]
    assert latest_values(outputs, "alerts")[ERRORS]["escalation"] == 3  # capped

    acked = escalating_monitor(escalate_after_s=10).apply(items(entries(script({0: 0.10}, {1: [command(T0 + 1.5, "ack", ERRORS, expires_in_s=3600)]}), 45)))
    assert "escalated" not in [t[1] for t in transitions(acked, "max_error_rate")]


def test_acks_and_silences_survive_a_restart() -> None:
    log = entries(script({0: 0.10}, {1: [command(T0 + 1.5, "ack", ERRORS, expires_in_s=3600), command(T0 + 1.6, "silence", "s1", matchers={"component": "parser"}, expires_in_s=3600)]}), 20)
    whole = run_all(log)
    ledger = Ledger()  # the runtime checkpoints it with the processor
    first = MonitorProcessor(MonitorSettings(rules=load_rules()))
    head = first.apply(items(log[:10], ledger))
    second = MonitorProcessor(MonitorSettings(rules=load_rules()))
    second.restore(first.snapshot())
    tail = second.apply(items(log[10:], ledger))
    assert head + tail == whole
    assert latest_values(whole, "alerts")[ERRORS]["acked_by"] == "ops"


def run_all(log: list[Any]) -> list[Output]:
    return MonitorProcessor(MonitorSettings(rules=load_rules())).apply(items(log))


def test_an_incremental_checkpoint_restores_every_timer_and_value() -> None:
    """What the runtime commits after every read (take_changes) is enough to resume identically, cut anywhere."""
    rules = tuple(dataclasses.replace(r, keep_firing_for_s=8.0, for_s=3.0) if r.name == "max_error_rate" else r for r in load_rules())
    log = entries(script({0: 0.10, 6: 0.0, 25: 0.30, 28: 0.0, 31: 0.30, 45: 0.0}, {33: [command(T0 + 33.5, "ack", ERRORS, expires_in_s=5)]}), 70)
    whole = MonitorProcessor(MonitorSettings(rules=rules)).apply(items(log, Ledger()))
    assert {"firing", "resolved", "acked", "unacked"} <= {e["transition"] for e in alert_events(whole, "max_error_rate")}
    for cut in (13, 29, 51, 60, 67, 77, 101, 120):
        ledger, first, parts = Ledger(), MonitorProcessor(MonitorSettings(rules=rules)), {}
        head = []
        for entry in log[:cut]:
            head += first.apply(items([entry], ledger))
            written, deleted = first.take_changes()
            parts.update(written)
            for key in deleted:
                parts.pop(key, None)
        resumed = MonitorProcessor(MonitorSettings(rules=rules))
        resumed.restore(parts)
        assert head + resumed.apply(items(log[cut:], ledger)) == whole, cut


def test_severity_does_not_flip_on_every_batch_near_a_level() -> None:
    """24-26 % errors around the 25 % critical level: critical once, held until under 23 %."""
    rates = {s: (0.26 if s % 2 else 0.24) for s in range(40)}
    outputs = run(script(rates, {}), 40)
    changes = [t for t in transitions(outputs, "max_error_rate") if t[1] == "severity_changed"]
    assert len(changes) <= 1


def test_a_removed_rule_resolves_its_alerts_after_a_restart() -> None:
    log = entries(script({0: 0.10}, {}), 5)
    first = MonitorProcessor(MonitorSettings(rules=load_rules()))
    first.apply(items(log, Ledger()))
    without = tuple(r for r in load_rules() if r.name != "max_error_rate")
    second = MonitorProcessor(MonitorSettings(rules=without))
    second.restore(first.snapshot())
    outputs = second.apply(items(entries(script({0: 0.10}, {}), 2, start=5, seqs={"parser": 5})))
    assert [e["transition"] for e in alert_events(outputs, "max_error_rate")] == ["resolved"]
    assert latest_values(outputs, "alerts")[ERRORS] is None


def test_worsening_while_acked_escalates_once_and_not_again_at_once() -> None:
    processor = escalating_monitor(escalate_after_s=10)
    outputs = processor.apply(items(entries(script({0: 0.10, 5: 0.60}, {1: [command(T0 + 1.5, "ack", ERRORS, expires_in_s=3600)]}), 16)))
    escalations = [t for t in transitions(outputs, "max_error_rate") if t[1] == "escalated"]
    assert escalations == [(7.995, "escalated", "critical")]  # the next one is due 10 s later, not in the same tick
