"""Single-scenario predictions per second through the SimPy engine, on one core.

Two workloads: the bundled default over and over (the engine's steady cost), and a seeded random mix
(dirty rates, links, limits, rules, port profiles) closer to what a sweep asks. Target: >= 2,000/s.
Run: .venv/bin/python benchmarks/bench_predict.py [--seconds 5]
"""

import argparse
import time

import numpy as np
from machine import load_average

from pausecast.models.files import scenario_from_dict
from pausecast.models.scenario import Scenario
from pausecast.sim import predict


def random_mix(n: int, seed: int = 1) -> list[Scenario]:
    rng = np.random.default_rng(seed)
    return [scenario_from_dict({
        "vm": {"memory_mib": float(rng.choice([1024, 4096, 16384])),
               "dirty": {"rate_mib_s": float(rng.uniform(0, 1000))}},
        "link": {"bandwidth_mbit_s": float(rng.choice([1000, 10000, 25000]))},
        "migration": {"max_downtime_ms": float(rng.uniform(50, 2000)),
                      "switchover_rule": str(rng.choice(["qemu", "pass-end"]))},
        "port_profile": {"type": str(rng.choice(["none", "802.1Qbg", "802.1Qbh"]))},
    }) for _ in range(n)]


def rate(scenarios: list[Scenario], seconds: float) -> float:
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        for s in scenarios:
            predict(s)
        done += len(scenarios)
    return done / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    mix = random_mix(500)
    converged = sum(predict(s).failure == "" for s in mix)
    print(f"load average before: {load_average()}")
    print(f"default scenario : {rate([Scenario()], args.seconds):8.0f} predictions/s (one core)")
    print(f"random mix of 500: {rate(mix, args.seconds):8.0f} predictions/s (one core; "
          f"{converged} converge)")
    print(f"load average after: {load_average()}")


if __name__ == "__main__":
    main()
