"""Max-min fair sharing by progressive filling (sim/bandwidth.py): worked examples and properties."""

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pausecast.sim.bandwidth import max_min_rates

INF = math.inf


def test_equal_flows_split_a_link_evenly():
    # three uncapped flows on a 9 GB/s link: 3 each
    assert max_min_rates([INF, INF, INF], [[0], [0], [0]], [9e9]) == pytest.approx([3e9] * 3)


def test_a_capped_flow_frees_its_unused_share_for_the_others():
    # 10 on one link; a is capped at 2 < 10/3, so it freezes at 2 and b, c split the other 8: 4 each
    assert max_min_rates([2.0, INF, INF], [[0], [0], [0]], [10.0]) == pytest.approx([2.0, 4.0, 4.0])


def test_a_cap_above_the_fair_share_changes_nothing():
    # a's cap 6 > 10/3: every flow gets 10/3
    assert max_min_rates([6.0, INF, INF], [[0], [0], [0]], [10.0]) == pytest.approx([10 / 3] * 3)


def test_parking_lot_long_flow_gets_the_tightest_links_share():
    # links 0 and 1 of capacity 1; flow 0 crosses both, flow 1 only link 0, flow 2 only link 1:
    # both links fill at level 1/2, so every flow gets 1/2
    rates = max_min_rates([INF, INF, INF], [[0, 1], [0], [1]], [1.0, 1.0])
    assert rates == pytest.approx([0.5, 0.5, 0.5])


def test_a_flow_bottlenecked_elsewhere_leaves_room_on_a_wide_link():
    # link 0 capacity 1 (flows 0, 1), link 1 capacity 2 (flows 0, 2). Level 1/2 fills link 0: flows 0
    # and 1 freeze at 1/2. Link 1 has 2 - 1/2 = 3/2 left for flow 2 alone.
    rates = max_min_rates([INF, INF, INF], [[0, 1], [0], [1]], [1.0, 2.0])
    assert rates == pytest.approx([0.5, 0.5, 1.5])


def test_three_levels_of_bottleneck():
    # link 0 (cap 3): flows 0, 1, 2; link 1 (cap 10): flows 2, 3. Flow 0 capped at 0.5.
    # Level 0.5: flow 0 freezes at its cap. Link 0 leaves 2.5 for flows 1, 2: level 1.25 fills it.
    # Link 1 then has 10 - 1.25 = 8.75 for flow 3.
    rates = max_min_rates([0.5, INF, INF, INF], [[0], [0], [0, 1], [1]], [3.0, 10.0])
    assert rates == pytest.approx([0.5, 1.25, 1.25, 8.75])


def test_no_flows_and_a_flow_on_no_link():
    assert max_min_rates([], [], [1.0]) == []
    assert max_min_rates([7.0], [[]], [1.0]) == [7.0]


@st.composite
def networks(draw):
    n_links = draw(st.integers(1, 5))
    capacities = draw(st.lists(st.floats(0.1, 100), min_size=n_links, max_size=n_links))
    n_flows = draw(st.integers(1, 8))
    paths = draw(st.lists(st.lists(st.integers(0, n_links - 1), min_size=1, max_size=n_links, unique=True),
                          min_size=n_flows, max_size=n_flows))
    caps = draw(st.lists(st.one_of(st.just(INF), st.floats(0.05, 100)), min_size=n_flows,
                         max_size=n_flows))
    return caps, paths, capacities


@settings(max_examples=300)
@given(networks())
def test_the_allocation_is_feasible_and_every_flow_has_a_bottleneck(net):
    """Max-min fairness, by definition: no link is over capacity, no flow over its cap, and each flow
    is either at its cap or crosses a full link on which no other flow gets more than it."""
    caps, paths, capacities = net
    rates = max_min_rates(caps, paths, capacities)
    loads = [sum(r for r, p in zip(rates, paths, strict=True) if j in p) for j in range(len(capacities))]
    for load, capacity in zip(loads, capacities, strict=True):
        assert load <= capacity * (1 + 1e-9)
    for i, (rate, cap, path) in enumerate(zip(rates, caps, paths, strict=True)):
        assert 0 < rate <= cap * (1 + 1e-12)
        at_cap = rate >= cap * (1 - 1e-9)
        bottlenecked = any(
            loads[j] >= capacities[j] * (1 - 1e-9)
            and all(rates[k] <= rate * (1 + 1e-9) for k in range(len(rates)) if j in paths[k])
            for j in path)
        assert at_cap or bottlenecked, f"flow {i} could get more"
