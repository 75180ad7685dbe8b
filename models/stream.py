"""The migration stream's rates: what binds the live phase and the stop-and-copy, and whether the link's
queue is full when QEMU stops the guest. One function for the SimPy engine (sim/engine.py LinkRates) and
the fast path (sim/fast.py), on floats or whole arrays of migrations (models/elementwise.py).

Three things can bind the stream: the link (line rate x efficiency), QEMU's own sender (a migration
thread copying pages into a socket: on a veth or a NIC faster than it, it is what an unshaped path
gives), and libvirt's bandwidth cap, which QEMU applies to the live phase only (the stop-and-copy runs
uncapped). Only when the link binds does the sender's socket, and the link's queue, fill up: that
backlog (link.socket_backlog_mib) drains inside the pause.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from . import elementwise as ew
from .units import mbit_s_to_bytes_s, mib_s_to_bytes_s

if TYPE_CHECKING:
    from .scenario import Scenario


@dataclass(frozen=True)
class StreamRates:
    # the live phase's rate: the slowest of link, sender and cap
    live_bytes_s: Any
    # the stop-and-copy's: the slower of link and sender at their final-copy figures (QEMU lifts the cap
    # once the guest is stopped)
    final_bytes_s: Any
    # the cap binds the live phase (QEMU's checks then come every rate-limit window)
    cap_bound: Any
    # the link, not the cap nor the sender, binds the live phase: its queue is full at the stop
    link_bound: Any


def off_or_bytes_s(mib_s: Any) -> Any:
    """A MiB/s limit where 0 means none, in bytes/s (inf for none)."""
    return ew.where(mib_s > 0, mib_s_to_bytes_s(mib_s), math.inf)


def stream_rates(bandwidth_mbit_s: Any, efficiency: Any, sender_mib_s: Any, cap_mib_s: Any,
                 final_copy_efficiency: Any = 0.0, final_copy_sender_mib_s: Any = 0.0) -> StreamRates:
    """The rates; the final copy's efficiency and sender rate, where 0, are the live phase's."""
    line_bytes_s = mbit_s_to_bytes_s(bandwidth_mbit_s)
    line = line_bytes_s * efficiency
    sender = off_or_bytes_s(sender_mib_s)
    cap = off_or_bytes_s(cap_mib_s)
    uncapped = ew.minimum(line, sender)
    cap_bound = cap < uncapped
    final_line = line_bytes_s * ew.where(final_copy_efficiency > 0, final_copy_efficiency, efficiency)
    final_sender = ew.where(final_copy_sender_mib_s > 0, off_or_bytes_s(final_copy_sender_mib_s), sender)
    # `&` of comparisons: bools on floats, boolean arrays on arrays
    return StreamRates(live_bytes_s=ew.minimum(uncapped, cap),
                       final_bytes_s=ew.minimum(final_line, final_sender), cap_bound=cap_bound,
                       link_bound=(cap >= uncapped) & (line <= sender))


def scenario_rates(scenario: Scenario) -> StreamRates:
    """One scenario's rates (its [link] and its migration's cap)."""
    link = scenario.link
    return stream_rates(link.bandwidth_mbit_s, link.efficiency, link.sender_mib_s,
                        scenario.migration.bandwidth_mib_s, link.final_copy_efficiency,
                        link.final_copy_sender_mib_s)
