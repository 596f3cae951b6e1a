"""Closed-loop reaction time: from a fault injected into the demo pipeline to the control change the pipeline applied.

    python bench/closed_loop.py [--trials 10] [--churn-per-s 40]

Each trial starts `pipepulse demo` afresh (its own prefix, one shared embedded
server) over about a hundred files of the standard library at concurrency 2, with
a 16-entry breadcrumb cache so that the extractor keeps working on misses, waits
until the extractor is healthy with a full window of normal traffic, then injects
the `throttle` fault (a downstream that admits one call at a time) with
`pipepulse fault`, and follows the chain through Redis: the `max_error_rate`
alert firing, the `lower_concurrency` recommendation, the optimizer's `applied`
decision, and the pipeline's own "configured" report of concurrency 1 (stamped by
the pipeline's clock when it obeyed). Prints each stage's delay after the
injection, p50 and p99 (with 10 trials the p99 is the worst trial), and, as the
peer measured in the same run, the fault-to-alert delay: what a monitor that
only alerts would take before a human could start to act.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import redis

from emitters.testing import wait_until
from processors.embedded import EmbeddedServer, ServerSettings
from schemas.codec import PAYLOAD_FIELD, decode_batch
from schemas.events import LifecycleEvent
from schemas.names import Names

PACKAGES = ("email", "json", "logging", "http", "urllib", "xml", "concurrent", "importlib")
STAGES = ("alert", "recommendation", "applied", "obeyed")


class Follower:
    """Reads a trial's streams incrementally and notes when each stage of the chain first shows."""

    def __init__(self, client: redis.Redis, names: Names) -> None:
        self.client, self.names = client, names
        self.cursor: dict[str, str] = {names.stream(s): "0" for s in ("alerts", "recommendations", "actions")} | {names.events: "0"}
        self.seen: dict[str, float] = {}
        self.healthy = False
        self.concurrency: int | None = None

    def poll(self) -> None:
        for stream, entries in self.client.xread(self.cursor, count=1000) or []:  # type: ignore[union-attr]
            name = stream.decode()
            for entry_id, fields in entries:
                self.cursor[name] = entry_id.decode()
                self._note(name, fields)
        raw = self.client.hget(self.names.latest("health"), "current")
        self.healthy = bool(raw) and json.loads(raw).get("components", {}).get("extractor", {}).get("status") == "healthy"  # type: ignore[arg-type]

    def _note(self, stream: str, fields: dict[bytes, bytes]) -> None:
        if stream == self.names.events:
            if PAYLOAD_FIELD in fields:
                batch = decode_batch(fields[PAYLOAD_FIELD]).batch
                for event in batch.events:
                    if batch.component == "extractor" and isinstance(event, LifecycleEvent) and "concurrency" in event.config:
                        self.concurrency = int(event.config["concurrency"])  # type: ignore[arg-type]
                        if self.concurrency == 1:
                            self.seen.setdefault("obeyed", event.timestamp_s)
            return
        body: dict[str, Any] = json.loads(fields[b"json"])
        if stream.endswith(":alerts") and body["rule"] == "max_error_rate" and body["transition"] == "firing":
            self.seen.setdefault("alert", body["at_s"])
        elif stream.endswith(":recommendations") and body["kind"] == "lower_concurrency":
            self.seen.setdefault("recommendation", body["issued_at_s"])
        elif stream.endswith(":actions") and body["decision"] == "applied" and (body["component"], body["setting"]) == ("extractor", "concurrency"):
            self.seen.setdefault("applied", body["at_s"])


def trial(index: int, server: EmbeddedServer, source: Path, state: Path, churn_per_s: float) -> dict[str, float]:
    names = Names(f"loop{index}")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIPEPULSE_")}
    env |= {"PIPEPULSE_REDIS_URL": server.url, "PIPEPULSE_PREFIX": names.prefix, "PIPEPULSE_STATE_DIR": str(state)}
    demo = subprocess.Popen(
        [sys.executable, "-m", "processors", "demo", "--source", str(source), "--concurrency", "2", "--churn-per-s", str(churn_per_s), "--cache-size", "16"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    client = redis.Redis.from_url(server.url)
    follower = Follower(client, names)
    try:
        def warm() -> bool:
            follower.poll()
            return follower.healthy and follower.concurrency == 2

        wait_until(warm, timeout_s=120, what="a healthy extractor at concurrency 2", interval_s=0.2)
        healthy_since = time.monotonic()

        def settled() -> bool:
            follower.poll()
            return follower.healthy and time.monotonic() - healthy_since > 12  # the 10 s window holds normal traffic only

        wait_until(settled, timeout_s=120, what="a full window of normal traffic", interval_s=0.2)
        injected_s = time.time()
        client.hset(names.demo_faults, "throttle", injected_s + 600)

        def done() -> bool:
            follower.poll()
            return "obeyed" in follower.seen

        wait_until(done, timeout_s=120, what="the pipeline obeying", interval_s=0.02)
        return {stage: follower.seen[stage] - injected_s for stage in STAGES}
    finally:
        demo.send_signal(signal.SIGTERM)
        demo.wait(timeout=60)
        client.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--churn-per-s", type=float, default=40.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, EmbeddedServer(ServerSettings(data_dir=Path(tmp) / "server", appendonly=False)) as server:
        source = Path(tmp) / "source"
        stdlib = Path(sysconfig.get_paths()["stdlib"])
        for package in PACKAGES:
            shutil.copytree(stdlib / package, source / package, ignore=shutil.ignore_patterns("__pycache__", "test*"))
        results = []
        for index in range(args.trials):
            results.append(trial(index, server, source, Path(tmp) / "state", args.churn_per_s))
            print(f"trial {index + 1}: " + ", ".join(f"{stage} +{results[-1][stage]:.2f} s" for stage in STAGES), flush=True)
    print(f"\n{'stage after the injection':<28} {'p50':>8} {'p99':>8} {'max':>8}")
    for stage in STAGES:
        values = np.array([r[stage] for r in results])
        print(f"{stage:<28} {np.percentile(values, 50):7.2f}s {np.percentile(values, 99):7.2f}s {values.max():7.2f}s")
    reaction = np.array([r["obeyed"] for r in results])
    alert = np.array([r["alert"] for r in results])
    print(f"\nfault -> control change applied by the pipeline: p50 {np.percentile(reaction, 50):.2f} s, p99 {np.percentile(reaction, 99):.2f} s")
    print(f"peer (fault -> alert only): p50 {np.percentile(alert, 50):.2f} s; the loop adds {np.percentile(reaction - alert, 50):.2f} s at p50 to act on it")


if __name__ == "__main__":
    main()
