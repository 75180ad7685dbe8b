"""One scenario on the local testbed: shape the link from [link], boot the test guest from [vm], let
it reach its dirty rate, migrate it from pc-src to pc-dst as [migration] says, and clean up."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable

from ..models.scenario import Scenario
from .events import ensure_event_loop
from .jobinfo import JobInfo
from .migrate import GIVE_UP_S, Endpoints, Measurement, migrate
from .scenario_map import delay_to_apply_ms, guest_for
from .testbed import DST, SRC, Testbed, netem_available

GUEST_NAME = "pausecast-guest"
# QEMU's dirty rate is measured between bitmap syncs; the guest starts dirtying when its fill is done,
# and a second of steady writing before the migration starts is what a running workload would show
WARMUP_S = 1.0


def shape_for(tb: Testbed, scenario: Scenario) -> float:
    """Shapes the testbed's link for the scenario and returns the measured RTT in ms. Raises
    ScenarioError when the scenario wants a delay this kernel cannot add and that matters."""
    tb.shape(scenario.link.bandwidth_mbit_s, 0.0)
    base_rtt_ms = tb.measure_rtt_ms()
    delay_ms = delay_to_apply_ms(scenario, netem_available(), base_rtt_ms)
    if delay_ms > 0:
        tb.shape(scenario.link.bandwidth_mbit_s, delay_ms)
        return tb.measure_rtt_ms()
    return base_rtt_ms


def endpoints(tb: Testbed, rtt_ms: float) -> Endpoints:
    src, dst = tb.host(SRC), tb.host(DST)
    return Endpoints(src_uri=src.uri, dst_uri=dst.uri, p2p_dst_uri=dst.tcp_uri, migrate_uri=dst.migrate_uri,
                     src_log=str(tb.migration_log(SRC)), dst_log=str(tb.migration_log(DST)), rtt_ms=rtt_ms)


def run_on_testbed(tb: Testbed, scenario: Scenario, *, name: str = GUEST_NAME,
                   on_sample: Callable[[float, JobInfo], None] | None = None,
                   give_up_s: float = GIVE_UP_S, keep_guest: bool = False) -> Measurement:
    """Runs the scenario once. The guest is destroyed afterwards wherever it is, unless keep_guest
    (the fault tests read its state and serial log)."""
    plan = guest_for(scenario)
    ensure_event_loop()
    rtt_ms = shape_for(tb, scenario)
    tb.destroy_guest(name)
    tb.start_guest(name, memory_mib=plan.memory_mib, dirty=plan.dirty, vcpus=plan.vcpus)
    try:
        time.sleep(WARMUP_S)
        return migrate(scenario, endpoints(tb, rtt_ms), name, on_sample=on_sample, give_up_s=give_up_s)
    finally:
        if not keep_guest:
            with contextlib.suppress(Exception):
                tb.destroy_guest(name)
