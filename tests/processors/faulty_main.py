"""An instrumented process whose faults a test switches on and off: `python -m tests.processors.faulty_main COMPONENT`.

One component doing real work at a steady pace, with an emitter and a system
sampler. Commands on stdin, one per line, each answered "ok": `errors` (half of
the operations raise), `slow` (operations sleep 80 ms), `memory` (the process
allocates 40 MB a second), `normal` (the fault ends and the memory is freed).
A component that stops is this process killed.
"""

from __future__ import annotations

import sys
import threading
import time

from emitters.config import EmitterConfig
from emitters.emitter import Emitter
from emitters.sampler import SystemSampler


class Fault(Exception):
    """What an operation raises while the error fault is on."""


def work(emitter: Emitter, fault: list[str], done: threading.Event) -> None:
    hoard: list[bytearray] = []
    n = 0
    while not done.is_set():
        if fault[0] == "normal":
            hoard.clear()
        elif fault[0] == "memory" and n % 20 == 0:
            hoard.append(bytearray(4 * 2**20))  # about 40 MB a second at 200 operations a second
        n += 1
        try:
            with emitter.track("work"):
                time.sleep(0.08 if fault[0] == "slow" else 0.001)  # the work itself, not synchronisation
                if fault[0] == "errors" and n % 2:
                    raise Fault("injected")
        except Fault:
            pass
        done.wait(0.004)


def main() -> None:
    fault = ["normal"]
    done = threading.Event()
    with Emitter(sys.argv[1], config=EmitterConfig.from_env()) as emitter:
        emitter.lifecycle("started")
        sampler = SystemSampler(emitter, interval_s=0.5, host=False).start()
        worker = threading.Thread(target=work, args=(emitter, fault, done))
        worker.start()
        for line in sys.stdin:
            fault[0] = line.strip()
            print("ok", flush=True)
        done.set()
        worker.join()
        sampler.stop()


if __name__ == "__main__":
    main()
