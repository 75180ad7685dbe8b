"""How libvirt sees a port-profile request (virnetdevvportprofile.c): it sends the request, reads the
status at once and then every 125 ms, and gives up after 10 s. So a switch that answers after L
seconds is seen after ceil(L / poll) polls, and one slower than the timeout fails the call."""

from __future__ import annotations

import math

import numpy as np

from .scenario import SwitchSpec
from .units import ms_to_s


def observed_latency_s(latency_s: float, poll_interval_s: float, timeout_s: float) -> float | None:
    """The latency libvirt observes, or None when it gives up first (silent switch: latency inf)."""
    polls = max(0, math.ceil(latency_s / poll_interval_s - 1e-9))
    observed = polls * poll_interval_s
    return None if observed > timeout_s else observed


def waits_for_switch(port_type: str, request: str) -> bool:
    """Which requests libvirt blocks on. Measured with libvirt 9.0 (tests/test_vdp_testbed.py): with
    802.1Qbg the Finish associate (and the Confirm disassociate) read the status left by the previous
    successful request and return at once; only Prepare's pre-associate waits. With 802.1Qbh every
    request waits for the NIC's answer, so the Finish associate lands inside the pause window."""
    if port_type == "none":
        return False
    if port_type == "802.1Qbg":
        return request == "preassociate"
    return True


def sample_service_s(spec: SwitchSpec, rng: np.random.Generator | None) -> float:
    """One service time of the switch: constant, exponential, or lognormal with the spec's mean and
    coefficient of variation. Shared by the simulated switch and the emulated one."""
    mean, dist = ms_to_s(spec.service_time_ms), spec.service_distribution
    if dist == "constant" or mean == 0:
        return mean
    if rng is None:
        raise ValueError("a random service time needs the run's generator")
    if dist == "exponential":
        return float(rng.exponential(mean))
    sigma2 = math.log1p(spec.service_cv**2)
    return float(rng.lognormal(math.log(mean) - sigma2 / 2, math.sqrt(sigma2)))
