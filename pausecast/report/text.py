"""Human-readable reports of result records: the edge where numbers become text."""

from __future__ import annotations

import json
import math
from typing import Any

from ..models.phases import PHASES
from ..models.record import MigrationRecord
from ..models.scenario import Scenario
from ..models.stream import scenario_rates
from ..models.units import bytes_to_mib, mbit_s_to_bytes_s
from ..runs.json_text import strict_json

TIMELINE_WIDTH = 48


# NaN: the phase never ran (a port refused in Prepare stops the migration before its pre-copy)
NOT_REACHED = "not reached"


def window_ms(value: float | None) -> str:
    """A window in a summary line: "never" when it never closes, "-" when unknown (NaN, or null in a
    strict-JSON summary read back)."""
    if value is None or math.isnan(value):
        return "-"
    return "never" if math.isinf(value) else f"{value:.1f} ms"


def _ms(value: float) -> str:
    return "never" if math.isinf(value) else NOT_REACHED if math.isnan(value) else f"{value:9.1f} ms"


def _s(value: float) -> str:
    return "never" if math.isinf(value) else NOT_REACHED if math.isnan(value) else f"{value:9.3f} s"


def describe_scenario(s: Scenario) -> str:
    d = s.vm.dirty
    if d.model == "constant":
        dirty = f"constant {d.rate_mib_s:g} MiB/s"
    elif d.model == "hotcold":
        dirty = f"hot {d.hot_set_mib:g} MiB at {d.hot_rate_mib_s:g} MiB/s + cold {d.cold_rate_mib_s:g} MiB/s"
    else:
        dirty = f"trace {d.path}"
    line_mib_s = bytes_to_mib(mbit_s_to_bytes_s(s.link.bandwidth_mbit_s) * s.link.efficiency)
    rates, link = scenario_rates(s), s.link
    # the stream's own rates only where a sender or a final-copy figure makes them other than the line's
    stream = "" if not (link.sender_mib_s or link.final_copy_efficiency or link.final_copy_sender_mib_s) \
        else (f"\n  stream live {bytes_to_mib(rates.live_bytes_s):.0f} MiB/s, stop-and-copy "
              f"{bytes_to_mib(rates.final_bytes_s):.0f} MiB/s")
    cap = f"{s.migration.bandwidth_mib_s:g} MiB/s" if s.migration.bandwidth_mib_s > 0 else "unlimited"
    port = s.port_profile.type if s.port_profile.type == "none" else (
        f"{s.port_profile.type} x {s.port_profile.vnics}, switch {s.switch.service_time_ms:g} ms "
        f"x {s.switch.capacity}, {s.switch.background_load_per_s:g} req/s background, {s.switch.mode}")
    zero = "" if s.vm.zero_page_fraction == 0 else (
        f", {s.vm.zero_page_fraction:.0%} zero pages ({s.vm.zero_page_layout})")
    return (f"  VM {s.vm.memory_mib:g} MiB{zero}, dirtying {dirty}\n"
            f"  link {s.link.bandwidth_mbit_s:g} Mbit/s x {s.link.efficiency:g} = {line_mib_s:.0f} MiB/s, "
            f"RTT {s.link.rtt_ms:g} ms; migration cap {cap}{stream}\n"
            f"  max downtime {s.migration.max_downtime_ms:g} ms, rule {s.migration.switchover_rule}, "
            f"overheads {s.overheads.profile}; port profile {port}"
            + (f"\n  policy {s.policy.orchestrator}: its monitor loop changes the max downtime and acts at "
               f"its deadlines (its clock x {s.policy.time_scale:g})" if s.policy.active else ""))


def _verdict(r: MigrationRecord) -> str:
    if r.failure == "not-converged":
        return f"NO: never converges (stopped looking after {r.iterations} iterations)"
    if r.failure:
        return f"FAILED: {r.failure}; the VM stays on the source (after {r.iterations} iterations)"
    forced = f", switchover forced by the timeout ({r.forced})" if r.forced else ""
    return f"yes, after {r.iterations} iterations (QEMU dirty-sync-count){forced}"


def timeline(r: MigrationRecord) -> list[str]:
    end = r.confirm_end_s if math.isfinite(r.confirm_end_s) else max(
        (v for v in (r.perform_end_s, r.prepare_end_s) if math.isfinite(v)), default=0.0)
    scale = TIMELINE_WIDTH / end if end > 0 else 0.0
    lines = []
    for info in PHASES:
        start, stop = r.phase_span(info.phase)
        if not (math.isfinite(start) and math.isfinite(stop)):
            lines.append(f"    {info.phase:<8} {'-':>7}   {info.host:<11}  ({NOT_REACHED})")
            continue
        left = int(start * scale)
        width = max(1, int(stop * scale) - left)
        lines.append(f"    {info.phase:<8} {start:7.3f} - {stop:7.3f} s  {info.host:<11} |"
                     f"{' ' * left}{'#' * width}")
    return lines


def format_prediction(scenario: Scenario, r: MigrationRecord) -> str:
    out = [f"pausecast: {scenario.name} (scenario {r.scenario_id}, engine {r.engine}, seed {r.seed})",
           describe_scenario(scenario), "",
           f"  converged        {_verdict(r)}",
           f"  total time       {_s(r.total_time_s)}",
           f"  pre-copy         {_s(r.precopy_time_s)}"]
    if r.failure != "not-converged":
        out += [f"  QEMU downtime    {_ms(r.downtime_ms)}   (source stop-and-copy)",
                f"  pause window     {_ms(r.pause_window_ms)}   (source stop -> destination start: "
                "both VMs paused)"]
        parts = [("final copy", r.final_copy_ms), ("handshake", r.handshake_ms),
                 ("Finish RPC", r.finish_rpc_ms), ("Finish work", r.finish_work_ms),
                 ("association", r.association_wait_ms), ("resume", r.resume_ms)]
        out += [f"    {name:<14} {_ms(value)}" for name, value in parts]
        out += [f"  network outage   {_ms(r.network_outage_ms)}   (source stop -> destination port "
                "forwards)"]
        if r.preassociation_ms or r.association_ms or r.disassociation_ms:
            out += [f"    pre-associate {_ms(r.preassociation_ms)} (Prepare), associate "
                    f"{_ms(r.association_ms).strip()} (Finish), disassociate "
                    f"{_ms(r.disassociation_ms).strip()} (Confirm), switch queueing "
                    f"{_ms(r.switch_wait_ms).strip()}"]
    if scenario.migration.auto_converge:
        slowed = "for ever" if math.isinf(r.throttle_time_s) else f"for {r.throttle_time_s:.1f} s"
        out += [f"  auto-converge    throttle up to {r.throttle_peak_pct} %, the guest slowed {slowed}"
                if r.throttle_peak_pct else "  auto-converge    never throttled"]
    out += [f"  bytes sent       {r.bytes_sent / 2**30:9.3f} GiB", "", "  phase timeline", *timeline(r)]
    return "\n".join(out)


def record_json(r: MigrationRecord, **more: Any) -> str:
    """Strict JSON: NaN and infinity (never, not reached) become null."""
    return json.dumps({**strict_json(r.to_row()), **more}, indent=2)
