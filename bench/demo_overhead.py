"""The demo pipeline's files/s with monitoring on and off, in the same run.

    python bench/demo_overhead.py [--rounds 7] [--source DIR] [--concurrency 2]

Each round runs `python -m emitters.demo --once` (every file of the tree parsed,
its calls extracted and detected, once) three ways, in an order that rotates
from round to round so that drift hits each way alike:
  off        `--no-monitoring`: no emitter, no control client, no fault reads (the peer);
  emitters   instrumented, sending to the embedded server, nothing consuming;
  monitored  instrumented, with `pipepulse run` (monitor, optimizer, alert log)
             consuming on the same two cores.
Prints the median files/s of each way and the paired overhead against `off`.
Target: at most 3 % files/s lost to the instrumentation (`emitters`).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import redis

from emitters.testing import wait_until
from processors.embedded import EmbeddedServer, ServerSettings

WAYS = ("off", "emitters", "monitored")


def once(source: Path | None, concurrency: int, env: dict[str, str], monitoring: bool) -> float:
    command = [sys.executable, "-m", "emitters.demo", "--once", "--concurrency", str(concurrency)]
    command += ["--source", str(source)] if source else []
    command += [] if monitoring else ["--no-monitoring"]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600, check=True)
    return float(json.loads(done.stdout.strip().splitlines()[-1])["files_per_s"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--source", type=Path, default=None, help="default: the standard library")
    parser.add_argument("--concurrency", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, EmbeddedServer(ServerSettings(data_dir=Path(tmp) / "server", appendonly=False)) as server:
        base = {k: v for k, v in os.environ.items() if not k.startswith("PIPEPULSE_")}
        env = {**base, "PIPEPULSE_REDIS_URL": server.url, "PIPEPULSE_STATE_DIR": str(Path(tmp) / "state")}
        results: dict[str, list[float]] = {way: [] for way in WAYS}
        once(args.source, args.concurrency, env, monitoring=False)  # warm the page cache and the bytecode
        for round_ in range(args.rounds):
            order = WAYS[round_ % 3 :] + WAYS[: round_ % 3]
            for way in order:
                run = None
                if way == "monitored":
                    run = subprocess.Popen([sys.executable, "-m", "processors", "run", "--no-log-alerts"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                    client = redis.Redis.from_url(server.url)
                    wait_until(lambda: client.hget("pipepulse:runtime", "optimizer") and client.hget("pipepulse:runtime", "monitor"), timeout_s=30, what="the processors")
                    client.close()
                try:
                    results[way].append(once(args.source, args.concurrency, env, monitoring=way != "off"))
                finally:
                    if run is not None:
                        run.send_signal(signal.SIGTERM)
                        run.wait(timeout=60)
            print(f"round {round_ + 1}: " + ", ".join(f"{way} {results[way][-1]:7.1f} files/s" for way in WAYS), flush=True)
    off = results["off"]
    print(f"\n{'way':<10} {'median files/s':>15}  {'paired loss vs off (median)':>28}")
    for way in WAYS:
        losses = [1 - on / base_ for on, base_ in zip(results[way], off)]
        print(f"{way:<10} {statistics.median(results[way]):15.1f}  {statistics.median(losses):27.1%}")
    loss = statistics.median(1 - on / base_ for on, base_ in zip(results["emitters"], off))
    print(f"\ninstrumentation overhead (emitters vs off): {loss:.1%}; target at most 3 %: {'met' if loss <= 0.03 else 'NOT met'}")


if __name__ == "__main__":
    main()
