"""The switch's queue (models/switch_queue.py) on its own: a worked example, FIFO order, M/M/1 theory.

The tests drive the queue with the smallest clock there is: a heap of service ends, run before any
arrival at the same time or later."""

from __future__ import annotations

import heapq
import itertools
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pausecast.models.scenario import SwitchSpec
from pausecast.models.switch_queue import Service, SwitchQueue, answers, refuses


def run(queue: SwitchQueue[int], arrivals_s: list[float]) -> list[Service[int]]:
    """Request i arrives at arrivals_s[i]; every service the queue starts, in the order it starts."""
    started: list[Service[int]] = []
    ends: list[tuple[float, int]] = []
    order = itertools.count()

    def start(service: Service[int] | None) -> None:
        if service is not None:
            started.append(service)
            heapq.heappush(ends, (service.end_s, next(order)))

    def finish_until(t_s: float) -> None:
        while ends and ends[0][0] <= t_s:
            start(queue.finish(heapq.heappop(ends)[0]))

    for job, arrival_s in enumerate(arrivals_s):
        finish_until(arrival_s)
        start(queue.arrive(job, arrival_s))
    finish_until(math.inf)
    return started


def test_one_server_worked_example():
    # The module's example: one server, 300 ms each, requests at 0.0, 0.1 and 0.7 s. The first is
    # served at once [0.0, 0.3]; the second waits 0.3 - 0.1 = 0.2 s and is served [0.3, 0.6]; the
    # third arrives to an idle server and is served [0.7, 1.0].
    queue = SwitchQueue(SwitchSpec(service_time_ms=300.0), rng=None)
    services = run(queue, [0.0, 0.1, 0.7])
    assert [s.job for s in services] == [0, 1, 2]
    assert [s.start_s for s in services] == pytest.approx([0.0, 0.3, 0.7])
    assert [s.end_s for s in services] == pytest.approx([0.3, 0.6, 1.0])
    assert [s.wait_s for s in services] == pytest.approx([0.0, 0.2, 0.0])
    assert (queue.busy, queue.queued) == (0, 0)


def test_a_request_waits_while_every_server_is_busy_and_not_after():
    # Two servers, 300 ms each, three requests at once: two start at 0, the third when the first
    # ends at 0.3, as `arrive` and `finish` say at the time they are told.
    queue = SwitchQueue(SwitchSpec(service_time_ms=300.0, capacity=2), rng=None)
    first, second = queue.arrive("a", 0.0), queue.arrive("b", 0.0)
    assert (first.job, second.job) == ("a", "b")
    assert queue.arrive("c", 0.0) is None and (queue.busy, queue.queued) == (2, 1)
    third = queue.finish(0.3)
    assert (third.job, third.arrival_s, third.start_s, third.wait_s) == ("c", 0.0, 0.3, 0.3)
    assert queue.finish(0.3) is None and (queue.busy, queue.queued) == (1, 0)


@given(st.lists(st.floats(0.0, 0.5), min_size=1, max_size=60), st.integers(1, 4), st.integers(0, 2**32 - 1),
       st.sampled_from(["constant", "exponential", "lognormal"]))
def test_requests_start_in_arrival_order_and_wait_only_for_a_full_house(gaps_s, capacity, seed, distribution):
    spec = SwitchSpec(service_time_ms=100.0, service_distribution=distribution, service_cv=2.0,
                      capacity=capacity)
    arrivals_s = list(itertools.accumulate(gaps_s))
    services = run(SwitchQueue(spec, np.random.default_rng(seed)), arrivals_s)
    assert [s.job for s in services] == list(range(len(arrivals_s)))  # every one served, first come first
    for s in services:
        assert s.arrival_s == arrivals_s[s.job] and s.service_s >= 0
        in_service = [o for o in services if o.start_s <= s.start_s < o.end_s]
        assert len(in_service) <= capacity
        if s.wait_s > 0:
            # it started when a server freed, having found all of them busy when it came
            assert any(o.end_s == s.start_s for o in services)
            assert sum(o.start_s <= s.arrival_s < o.end_s for o in services) == capacity


def test_mm1_mean_wait_is_the_theorys_within_four_standard_errors():
    # M/M/1 with lambda = 50/s, mu = 100/s: rho = 0.5 and the mean wait in queue (Erlang C with one
    # server is rho) is Wq = rho / (mu - lambda) = 10 ms. Successive waits are correlated; the mean
    # of n of them has variance rho (2 + 5 rho - 4 rho^2 + rho^3) / ((1 - rho)^4 mu^2 n) (Daley 1968),
    # 29 / (mu^2 n) at rho = 0.5: for n = 200,000 the standard error is 0.12 ms, four of them 0.48 ms.
    rate_per_s, mu_per_s, n = 50.0, 100.0, 200_000
    rho = rate_per_s / mu_per_s
    expected_s = rho / (mu_per_s - rate_per_s)
    sigma_s = math.sqrt(rho * (2 + 5 * rho - 4 * rho**2 + rho**3) / (1 - rho) ** 4 / n) / mu_per_s
    assert (expected_s, 4 * sigma_s) == pytest.approx((0.010, 0.00048), rel=0.01)
    spec = SwitchSpec(service_time_ms=1000.0 / mu_per_s, service_distribution="exponential",
                      background_load_per_s=rate_per_s)
    queue = SwitchQueue(spec, np.random.default_rng(2024))
    arrivals_s = list(itertools.accumulate(queue.background_gap_s() for _ in range(n)))
    services = run(queue, arrivals_s)
    assert arrivals_s[-1] == pytest.approx(n / rate_per_s, rel=0.01)  # Poisson at the given rate
    assert np.mean([s.service_s for s in services]) == pytest.approx(1 / mu_per_s, rel=0.01)
    assert np.mean([s.wait_s for s in services]) == pytest.approx(expected_s, abs=4 * sigma_s)
    # and the share that waited at all is Erlang C with one server, rho (its spread over seeds: 0.002)
    assert np.mean([s.wait_s > 0 for s in services]) == pytest.approx(rho, abs=0.01)


def test_modes_silent_takes_no_request_refuse_answers_no():
    assert [answers(SwitchSpec(mode=m)) for m in ("answer", "refuse", "silent")] == [True, True, False]
    assert [refuses(SwitchSpec(mode=m)) for m in ("answer", "refuse", "silent")] == [False, True, False]
