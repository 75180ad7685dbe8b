"""How libvirt sees a port-profile request (virnetdevvportprofile.c): it sends the request, reads the
status at once and then every 125 ms, and gives up after 10 s (the constants below: the executor's
netlink station polls with them). So a switch that answers after L seconds is seen after
ceil(L / poll) polls, and one slower than the timeout fails the call."""

from __future__ import annotations

import math

# libvirt src/util/virnetdevvportprofile.c: STATUS_POLL_INTERVL_USEC, 1/8 s between status reads
STATUS_POLL_INTERVAL_MS = 125.0
# libvirt src/util/virnetdevvportprofile.c: STATUS_POLL_TIMEOUT_USEC, 10 s before the call fails
STATUS_POLL_TIMEOUT_S = 10.0


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

