"""CPU cost of alert evaluation with 1,000 series and 20 rules, as a share of one core at real-time pace.

    python bench/evaluator_cost.py [--components 50] [--operations 20] [--batches-per-s 5] [--seconds 120]

Pure: no Redis. A log of `--seconds` of event time: every second each of
`--components` components sends `--batches-per-s` batches (an emitter flushes
every 50 ms while busy, so up to 20) holding its `--operations` operations,
then a tick; components x operations operation series (1,000 by default) plus
one series per component. The same log is folded twice, in one run:

- the monitor with the 12 shipped rules plus 8 more thresholds (20 rules);
- the peer: the same monitor with no rules (statistics, forecasts, health).

The difference in CPU time is the cost of evaluation: the sliding views built
for per-batch evaluation, the rules on every batch and tick, baselines, and
the alert outputs. Divided by the simulated seconds it is the share of one
core that evaluation needs when the log arrives in real time (target <= 10 %).
Two minutes of event time let the baselines learn, so degradation and spike
rules are judged too; the workload has errors and cache misses, so some
alerts fire.
"""

from __future__ import annotations

import argparse
import gc
import time

from processors.ledger import Ledger
from processors.intake import prepare
from processors.monitor import MonitorProcessor, MonitorSettings
from processors.rules import Rule, load_rules, parse_rule
from schemas.checks import Limits
from workload import Operation, one_second, operation_calls

EXTRA_METRICS = ("latency_p50_ms", "latency_p90_ms", "latency_max_ms", "latency_mean_ms", "throughput_per_s", "success_rate", "error_rate", "cache_hit_rate")


def extra_rules() -> tuple[Rule, ...]:
    """Eight more operation-scope thresholds, quiet on this workload, so evaluation is mostly the common case."""
    rules = []
    for metric in EXTRA_METRICS:
        direction = "below" if metric in ("success_rate", "cache_hit_rate") else "above"
        limit = {"success_rate": 0.5, "cache_hit_rate": 0.1, "error_rate": 0.9, "throughput_per_s": 1e9}.get(metric, 60_000.0)
        rules.append(parse_rule({"name": f"extra_{metric}", "kind": "threshold", "scope": "operation", "metric": metric, "direction": direction, "levels": {"warning": limit}}))
    return tuple(rules)


def fold(rules: tuple[Rule, ...], log: list[list[tuple[bytes, dict[bytes, bytes]]]]) -> tuple[float, int]:
    """CPU seconds to fold the log (prepared beforehand, so decoding is not counted) and the alert events produced."""
    monitor, ledger, limits = MonitorProcessor(MonitorSettings(rules=rules)), Ledger(), Limits()
    prepared = [prepare(second, ledger, limits).items for second in log]
    gc.collect()
    alerts = 0
    started = time.process_time()
    for items in prepared:
        outputs = monitor.apply(items)
        monitor.take_changes()
        alerts += sum(1 for o in outputs if getattr(o, "stream", None) == "alerts")
    return time.process_time() - started, alerts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--components", type=int, default=50)
    parser.add_argument("--operations", type=int, default=20, help="operations per component")
    parser.add_argument("--events-per-series", type=int, default=5, help="events per operation series per simulated second")
    parser.add_argument("--batches-per-s", type=int, default=5, help="batches per component per simulated second")
    parser.add_argument("--seconds", type=int, default=120, help="simulated event time")
    parser.add_argument("--repeats", type=int, default=3, help="fold each variant this many times; the fastest counts")
    args = parser.parse_args()

    operations = [Operation(f"op_{i:02d}", 0.05 * 1.4**i, 0.01, 0.8 if i % 4 == 0 else None) for i in range(args.operations)]
    calls = [operation_calls(args.operations * args.events_per_series * 16, seed=c, operations=operations) for c in range(args.components)]
    log = [one_second(s, calls, args.operations, args.events_per_series, args.batches_per_s) for s in range(args.seconds)]
    rules = load_rules() + extra_rules()
    with_rules, peer = [], []
    for _ in range(args.repeats):  # interleaved, so a burst of other load hits both alike
        with_rules.append(fold(rules, log))
        peer.append(fold((), log))
    (rules_s, alerts), (peer_s, _) = min(with_rules), min(peer)
    cost_s = rules_s - peer_s
    batches = (len(log[0]) - 1) // args.components
    print(f"{args.components * args.operations} operation series + {args.components} component series, {len(rules)} rules, {args.seconds} s of event time")
    print(f"{args.components} components x {batches} batches/s, {args.events_per_series} events per series per second; {alerts} alert events")
    print(f"monitor with {len(rules)} rules: {rules_s:7.2f} s CPU   peer (no rules): {peer_s:7.2f} s CPU   ratio {rules_s / peer_s:.2f}")
    print(f"evaluation: {cost_s:.2f} s CPU for {args.seconds} s of event time = {100 * cost_s / args.seconds:.1f} % of one core (target <= 10 %)")
    print(f"per evaluation round: {1e6 * cost_s / (args.seconds * (args.components * batches + 1)):.0f} us (one per batch, plus one per tick)")


if __name__ == "__main__":
    main()
