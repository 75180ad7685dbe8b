"""The shared switch as a queueing server (sim/switch.py) against M/M/c theory."""

import math

import numpy as np
import pytest
import simpy

from pausecast.models.scenario import SwitchSpec
from pausecast.sim.switch import Switch


def erlang_c(servers: int, offered: float) -> float:
    """Probability that an arrival waits in M/M/c (Erlang C), offered load a = lambda / mu."""
    top = offered**servers / math.factorial(servers) * servers / (servers - offered)
    return top / (sum(offered**k / math.factorial(k) for k in range(servers)) + top)


def test_erlang_c_worked_example():
    # c = 2, a = 1: (1/2 x 2) / (1 + 1 + 1) = 1/3
    assert erlang_c(2, 1.0) == pytest.approx(1 / 3)


def test_background_load_waits_as_long_as_mmc_theory_says():
    # Poisson arrivals at lambda = 100/s, exponential service with mean 10 ms (mu = 100/s), two
    # served at once: rho = 0.5, Erlang C = 1/3, Wq = C / (c mu - lambda) = (1/3) / 100 s = 3.33 ms.
    # 3,000 s is ~300,000 requests; over seeds the mean's spread is ~1.3%, so 5% is ~4 sigma.
    rate_per_s, service_ms, servers = 100.0, 10.0, 2
    mu = 1000.0 / service_ms
    expected_s = erlang_c(servers, rate_per_s / mu) / (servers * mu - rate_per_s)
    env = simpy.Environment()
    switch = Switch(env, SwitchSpec(service_time_ms=service_ms, service_distribution="exponential",
                                    capacity=servers, background_load_per_s=rate_per_s),
                    np.random.default_rng(2024))
    env.run(until=3000.0)
    waits = [s.wait_s for s in switch.served]
    assert len(waits) == pytest.approx(300_000, rel=0.01)
    assert np.mean(waits) == pytest.approx(expected_s, rel=0.05)
    # and the share of requests that waited at all is Erlang C itself
    assert np.mean([w > 0 for w in waits]) == pytest.approx(1 / 3, rel=0.05)
