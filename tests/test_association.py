"""libvirt's association polling (models/association.py): its constants and what the poll shows."""

import inspect

import pytest

from pausecast.models.association import STATUS_POLL_INTERVAL_MS, STATUS_POLL_TIMEOUT_S, observed_latency_s
from pausecast.models.scenario import SwitchSpec
from pausecast.models.units import ms_to_s


def test_the_scenario_and_the_station_poll_as_libvirt_does():
    assert (STATUS_POLL_INTERVAL_MS, STATUS_POLL_TIMEOUT_S) == (125.0, 10.0)
    spec = SwitchSpec()
    assert (spec.poll_interval_ms, spec.timeout_s) == (STATUS_POLL_INTERVAL_MS, STATUS_POLL_TIMEOUT_S)
    pytest.importorskip("pyroute2")
    from pausecast.executor.vdp.station import LldpadClient

    station = {name: p.default for name, p in inspect.signature(LldpadClient).parameters.items()}
    assert (station["poll_interval_s"], station["timeout_s"]) == (ms_to_s(STATUS_POLL_INTERVAL_MS),
                                                                  STATUS_POLL_TIMEOUT_S)


def test_an_answer_is_seen_at_the_next_poll_and_not_after_the_timeout():
    # 300 ms falls between the 2nd (250 ms) and 3rd (375 ms) poll; 125 ms is seen at the first poll
    # after the send; 10 s is the last poll; 10.001 s is after libvirt gave up.
    poll_s = ms_to_s(STATUS_POLL_INTERVAL_MS)
    seen = [observed_latency_s(x, poll_s, STATUS_POLL_TIMEOUT_S) for x in (0.0, 0.125, 0.3, 10.0, 10.001)]
    assert seen == pytest.approx([0.0, 0.125, 0.375, 10.0, None])
