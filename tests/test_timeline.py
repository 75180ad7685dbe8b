"""models/timeline.py: the layout forward, then back, gives the fixed costs again."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pausecast.models.timeline import Overheads, forward, inverse

seconds = st.floats(min_value=0.0, max_value=10.0, allow_nan=False)


@given(st.lists(seconds, min_size=8, max_size=8), st.floats(0.0, 0.5), seconds, seconds)
def test_overheads_forward_then_inverse_give_the_overheads_back(costs_s, half_rtt_s, precopy_s, final_s):
    oh = Overheads(*costs_s)
    back = inverse(forward(oh, half_rtt_s, precopy_s, final_s), half_rtt_s)
    # each cost comes back as a difference of sums of at most ~40 s: a few ulps of 40 s, under 1e-12 s
    assert dataclasses.asdict(back) == pytest.approx(dataclasses.asdict(oh), abs=1e-12)
