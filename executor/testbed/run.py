"""One scenario on the local testbed: shape the link from [link] (a link of scenario_map.UNSHAPED_MBIT_S
or more: the veth unshaped), boot the test guest from [vm], let it reach its dirty rate, migrate it
from pc-src to pc-dst as [migration] says, and clean up."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import sys
import time
from collections.abc import Callable

from ...models.record import Measured
from ...models.scenario import Scenario
from ..migration.daemon_log import LogTail
from ..migration.events import ensure_event_loop
from ..migration.jobinfo import JobInfo
from ..migration.migrate import GIVE_UP_S, Endpoints, Measurement, migrate, stuck_vsi_after
from ..vdp.faults import StuckVsiError, qbg_instance_ids
from .hosts import DST, SRC, Testbed
from .link import netem_available
from .scenario_map import GuestPlan, delay_to_apply_ms, guest_for, shaped_mbit_s

GUEST_NAME = "pausecast-guest"
# QEMU's dirty rate is measured between bitmap syncs; the guest starts dirtying when its fill is done,
# and a second of steady writing before the migration starts is what a running workload would show
WARMUP_S = 1.0


def shape_for(tb: Testbed, scenario: Scenario) -> float:
    """Shapes the testbed's link for the scenario and returns the measured RTT in ms. Raises
    ScenarioError when the scenario wants a delay this kernel cannot add and that matters."""
    tb.shape(shaped_mbit_s(scenario), 0.0)
    base_rtt_ms = tb.measure_rtt_ms()
    delay_ms = delay_to_apply_ms(scenario, netem_available(), base_rtt_ms)
    if delay_ms > 0:
        tb.shape(shaped_mbit_s(scenario), delay_ms)
        return tb.measure_rtt_ms()
    return base_rtt_ms


def endpoints(tb: Testbed, rtt_ms: float) -> Endpoints:
    src, dst = tb.host(SRC), tb.host(DST)
    return Endpoints(src_uri=src.uri, dst_uri=dst.uri, p2p_dst_uri=dst.tcp_uri, migrate_uri=dst.migrate_uri,
                     src_log=str(tb.migration_log(SRC)), dst_log=str(tb.migration_log(DST)), rtt_ms=rtt_ms,
                     src_name=SRC, dst_name=DST, src_lldpad_log=_lldpad_log(tb, SRC),
                     dst_lldpad_log=_lldpad_log(tb, DST))


def _lldpad_log(tb: Testbed, host: str) -> str:
    log = tb.lldpad_log(host)
    return "" if log is None else str(log)


def _start_guest(tb: Testbed, name: str, plan: GuestPlan) -> None:
    """Starts the guest on the source; a start that the source's lldpad refuses for a stuck VSI raises
    StuckVsiError with the diagnosis instead of libvirt's bare error."""
    import libvirt

    daemon, lldpad = LogTail(tb.migration_log(SRC)), LogTail(_lldpad_log(tb, SRC))
    try:
        tb.start_guest(name, memory_mib=plan.memory_mib, dirty=plan.dirty, vcpus=plan.vcpus)
    except libvirt.libvirtError as exc:
        xml = tb.guest_xml(name, memory_mib=plan.memory_mib, dirty=plan.dirty, vcpus=plan.vcpus)
        fault = stuck_vsi_after(SRC, str(exc), daemon, lldpad, qbg_instance_ids(xml))
        if fault is None:
            raise
        raise StuckVsiError(fault) from exc


def run_on_testbed(tb: Testbed, scenario: Scenario, *, name: str = GUEST_NAME,
                   on_sample: Callable[[float, JobInfo], None] | None = None,
                   give_up_s: float = GIVE_UP_S, keep_guest: bool = False,
                   recover: bool = True, work_paced: bool | None = None) -> Measurement:
    """Runs the scenario once. The guest is destroyed afterwards wherever it is, unless keep_guest
    (the fault tests read its state and serial log). On the 802.1Qbg testbed a run that a stuck VSI
    stopped (a host's lldpad refused the guest's start or the migration) runs once more after
    restarting that host's lldpad, unless not `recover`; stderr and Measured.recovered say so.
    (Only a testbed's lldpad is ever restarted: on real hosts the diagnosis is all.) `work_paced`: the
    test guest's pacing (scenario_map.guest_for; None: its default for the scenario)."""
    run = functools.partial(_run_once, tb, scenario, name=name, on_sample=on_sample, give_up_s=give_up_s,
                            keep_guest=keep_guest, work_paced=work_paced)
    try:
        m = run()
    except StuckVsiError as exc:
        if not (recover and tb.recovers_port_faults):
            raise
        fault = exc.fault
    else:
        if not (m.record.failure and m.port_fault and recover and tb.recovers_port_faults):
            return m
        fault = m.port_fault
    print(f"pausecast: {fault.diagnosis}; the testbed does so and runs again once", file=sys.stderr)
    # gone before the restart: lldpad refuses a VSI's associate (EINVAL) while its de-associate waits for
    # the switch, and libvirt does not wait for that answer before the next start
    tb.destroy_guest(name)
    tb.recover_stuck_vsi(fault)
    again = run()
    note = f"{fault.diagnosis} (lldpad restarted on {fault.host}, run again)"
    return dataclasses.replace(again, record=dataclasses.replace(
        again.record, extra=dataclasses.replace(Measured.of(again.record), recovered=note).as_extra()))


def _run_once(tb: Testbed, scenario: Scenario, *, name: str,
              on_sample: Callable[[float, JobInfo], None] | None, give_up_s: float,
              keep_guest: bool, work_paced: bool | None) -> Measurement:
    plan = guest_for(scenario, nic_port=tb.nic_port, work_paced=work_paced)
    ensure_event_loop()
    rtt_ms = shape_for(tb, scenario)
    tb.destroy_guest(name)
    _start_guest(tb, name, plan)
    try:
        time.sleep(WARMUP_S)
        return migrate(scenario, endpoints(tb, rtt_ms), name, on_sample=on_sample, give_up_s=give_up_s,
                       observe_port=tb.port_observer())
    finally:
        if not keep_guest:
            with contextlib.suppress(Exception):
                tb.destroy_guest(name)
