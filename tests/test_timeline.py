"""models/timeline.py: the layout forward then back gives the fixed costs again, and a run's marks
back then forward give the marks again."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pausecast.models.timeline import Marks, Overheads, forward, inverse

seconds = st.floats(min_value=0.0, max_value=10.0, allow_nan=False)


@given(st.lists(seconds, min_size=8, max_size=8), st.floats(0.0, 0.5), seconds, seconds)
def test_overheads_forward_then_inverse_give_the_overheads_back(costs_s, half_rtt_s, precopy_s, final_s):
    oh = Overheads(*costs_s)
    back = inverse(forward(oh, half_rtt_s, precopy_s, final_s), half_rtt_s)
    # each cost comes back as a difference of sums of at most ~40 s: a few ulps of 40 s, under 1e-12 s
    assert dataclasses.asdict(back) == pytest.approx(dataclasses.asdict(oh), abs=1e-12)


gaps = st.floats(min_value=0.0, max_value=5.0, allow_nan=False)


@given(st.lists(gaps, min_size=10, max_size=10), st.floats(0.0, 0.05))
def test_marks_inverse_then_forward_give_the_marks_back(g, half_rtt_s):
    # a run's boundaries in order (any gaps, as a measured run has them), then the parts of its pause
    begin, prepare, setup, live, handshake, final, resume, pause, confirm, announce = g
    t = [0.0]
    for gap in (begin, prepare, setup, live):
        t.append(t[-1] + gap)
    resumed = t[4] + pause
    # QEMU's RESUME a little after libvirt's pause window ends, as on real hosts
    marks = Marks(begin_start_s=t[0], prepare_start_s=t[1], perform_start_s=t[2], live_start_s=t[3],
                  source_stop_s=t[4], handshake_s=handshake, final_copy_s=final, resume_s=resume,
                  destination_start_s=resumed, total_time_s=resumed + confirm,
                  destination_resume_s=resumed + 0.003, port_first_frame_s=resumed + 0.003 + announce)
    back = forward(inverse(marks, half_rtt_s), half_rtt_s, precopy_s=marks.source_stop_s - marks.live_start_s,
                   final_copy_s=marks.final_copy_s, start_s=marks.begin_start_s)
    want = dataclasses.asdict(marks)
    got = dataclasses.asdict(back)
    # the layout has one destination start: QEMU's RESUME is libvirt's, and the announce follows it
    assert got.pop("destination_resume_s") == got["destination_start_s"]
    assert got.pop("port_first_frame_s") - got["destination_start_s"] == pytest.approx(
        want.pop("port_first_frame_s") - want.pop("destination_resume_s"), abs=1e-12)
    assert got == pytest.approx(want, abs=1e-12)
