"""A scenario on the testbed: the test guest and the link that stand for its [vm] and [link].

The guest (executor/testbed/files/dirtier.c) fills a region with non-zero bytes and dirties it; the
rest of its RAM stays zero, which is the model's written memory, memory x (1 - zero_page_fraction).
Its dirty models are the scenario's `constant` (one sweep over the region) and `hotcold` (a hot set
swept over and over plus a cold sweep over the rest of the region). What the guest cannot stand for is
refused with a `ScenarioError` naming the field.

Where the zero pages lie is the scenario's `vm.zero_page_layout`, and the guest lays its region out so:
spread, its written pages spread evenly over all of RAM but RESERVED_MIB (QEMU's walk meets zero and
written pages in proportion); written-low, its written pages contiguous from region_start_mib up and
the RAM above them never touched (the walk sends all the data, then the zero pages). One assumption of
the model about a workload (models/switchover.py) is built into the guest here, so that a validation
tests the migration model and not the guest's shape: a dirtied page is as likely to be any written
page, so pages dirtied between two syncs fall on the pending set at random (the guest sweeps in a
scrambled order). A guest that swept its pages in address order would dirty a band just ahead of the
pending one, never on it, and converge measurably slower than the model predicts.
"""

from __future__ import annotations

from dataclasses import dataclass

from ...models.errors import ScenarioError
from ...models.scenario import Scenario
from ...models.units import mib_s_to_pages_s
from .guest_domain import PAGE_BYTES, STRIDE_ONE, DirtySpec

# Guest RAM the region never covers: below region_start_mib (BIOS, the 1 MiB kernel) and one MiB at the
# end (guest_domain.DirtySpec.min_memory_mib).
RESERVED_MIB = 3
# Without a delay qdisc the testbed's RTT is what the veth gives (~0.05 ms). A scenario asking for up to
# this much more is run anyway: the model charges about three RTTs to the total and half of one to the
# pause window, so 1 ms moves a prediction by ~3 ms and ~0.5 ms, inside the testbed's run-to-run spread.
RTT_TOLERANCE_MS = 1.0
# A scenario whose link is at least this fast stands for the veth left unshaped: no tbf, the path as
# fast as the kernel copies, where QEMU's own sender binds the stream (link.sender_mib_s)
UNSHAPED_MBIT_S = 40_000


def shaped_mbit_s(scenario: Scenario) -> float | None:
    """The tbf rate the testbed gives the scenario's link; None: the veth unshaped."""
    bandwidth = scenario.link.bandwidth_mbit_s
    return None if bandwidth >= UNSHAPED_MBIT_S else bandwidth


@dataclass(frozen=True)
class GuestPlan:
    memory_mib: int
    vcpus: int
    dirty: DirtySpec


def guest_for(scenario: Scenario, report_ms: int = 100, nic_port: str = "none",
              work_paced: bool | None = None) -> GuestPlan:
    """The test guest that behaves as the scenario's VM does, on a testbed whose guest NIC carries a
    `nic_port` port profile ("none": no NIC at all). `work_paced` (dirtier.c): the guest loses the work
    of the time its vCPU cannot run, as the CPU-bound dirtier auto-converge's model throttles does
    (models/auto_converge.py); else it catches up after a stall, as a timer-paced writer does, which
    keeps its rate in the host's time on a busy machine. By default work-paced exactly when the
    scenario turns auto-converge on: without the throttle a stall is the machine's, not the model's."""
    vm, dirty = scenario.vm, scenario.vm.dirty
    if vm.page_size_bytes != PAGE_BYTES:
        raise ScenarioError("vm.page_size_bytes", vm.page_size_bytes,
                            f"the test guest writes {PAGE_BYTES}-byte pages")
    if vm.memory_mib != int(vm.memory_mib) or vm.memory_mib < RESERVED_MIB + 1:
        raise ScenarioError("vm.memory_mib", vm.memory_mib,
                            f"the test guest needs a whole number of MiB >= {RESERVED_MIB + 1}")
    if vm.device_state_mib > 0:
        raise ScenarioError("vm.device_state_mib", vm.device_state_mib,
                            "the test guest's device state is QEMU's own (a few KiB): use 0")
    if scenario.port_profile.type not in ("none", nic_port):
        allowed = (f"none or {nic_port} on this testbed" if nic_port != "none" else
                   "none: this testbed's guest has no NIC (an 802.1Qbg scenario brings the testbed up with "
                   "a switch)")
        raise ScenarioError("port_profile.type", scenario.port_profile.type, allowed)
    memory_mib = int(vm.memory_mib)
    region_mib = round(memory_mib * (1.0 - vm.zero_page_fraction))
    if not 1 <= region_mib <= memory_mib - RESERVED_MIB:
        lo, hi = RESERVED_MIB / memory_mib, 1.0 - 0.5 / memory_mib
        raise ScenarioError("vm.zero_page_fraction", vm.zero_page_fraction,
                            f"the test guest keeps {RESERVED_MIB} MiB out of its region: allowed "
                            f"[{lo:.4f}, {hi:.4f}) for {memory_mib} MiB")

    def pages_s(rate_mib_s: float) -> int:
        return round(mib_s_to_pages_s(rate_mib_s, PAGE_BYTES))

    # spread: the written pages spread evenly over the RAM the region may use, in the guest's 16.16 fixed
    # point; written-low: next to each other, the rest of RAM above them untouched
    stride_fp = ((memory_mib - RESERVED_MIB) * STRIDE_ONE // region_mib
                 if vm.zero_page_layout == "spread" else STRIDE_ONE)
    paced = scenario.migration.auto_converge if work_paced is None else work_paced
    layout = {"report_ms": report_ms, "stride_fp": stride_fp, "scatter": 1, "pm_timer": 1,
              "work_paced": int(paced)}
    if dirty.model == "constant":
        spec = DirtySpec.constant(pages_s(dirty.rate_mib_s), region_mib, **layout)
    elif dirty.model == "hotcold":
        hot_mib = round(dirty.hot_set_mib)
        if not 1 <= hot_mib <= region_mib:
            raise ScenarioError("vm.dirty.hot_set_mib", dirty.hot_set_mib,
                                f"the test guest's hot set is whole MiB in [1, {region_mib}]")
        spec = DirtySpec.hot_cold(region_mib, hot_mib, pages_s(dirty.hot_rate_mib_s),
                                  pages_s(dirty.cold_rate_mib_s), **layout)
    else:
        raise ScenarioError("vm.dirty.model", dirty.model, "the test guest does constant | hotcold")
    return GuestPlan(memory_mib, vm.vcpus, spec)


def delay_to_apply_ms(scenario: Scenario, can_delay: bool, measured_rtt_ms: float) -> float:
    """The RTT to add with a delay qdisc: the scenario's, where the kernel can delay packets. Where it
    cannot, 0, unless the scenario asks for a delay that matters (RTT_TOLERANCE_MS): then it refuses."""
    wanted = scenario.link.rtt_ms
    if can_delay:
        return max(0.0, wanted - measured_rtt_ms)
    if wanted > measured_rtt_ms + RTT_TOLERANCE_MS:
        raise ScenarioError("link.rtt_ms", wanted,
                            f"this kernel cannot delay packets (no sch_netem) and the testbed's RTT is "
                            f"{measured_rtt_ms:.2f} ms: allowed <= {measured_rtt_ms + RTT_TOLERANCE_MS:.1f}")
    return 0.0
