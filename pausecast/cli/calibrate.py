"""`pausecast calibrate`: measure a migration's fixed costs with an idle guest and write them as an
overheads profile that scenarios use with `overheads.profile = "<path>"`; with --switch, fit the
switch's service time to measured associations and write it as a [switch] section."""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import tomli_w
from tqdm import tqdm

from ..analysis.calibration import COLD_START_RULE, cold_start_runs, combine, overheads_of
from ..analysis.link_fit import PARAMETERS as LINK_PARAMETERS
from ..analysis.link_fit import (
    SLOWER_LINK_SHARE,
    LinkFit,
    LinkRun,
    final_wire_bytes_measured,
    fit_link_runs,
    link_run,
    live_bound,
    live_rate_bytes_s,
    sender_live_bytes_s,
)
from ..analysis.validation import median_finite
from ..executor.migration.migrate import ExecutorError
from ..executor.testbed.run import GUEST_NAME
from ..executor.testbed.scenario_map import UNSHAPED_MBIT_S
from ..models.errors import ScenarioError
from ..models.files import load_scenario, scenario_from_dict
from ..models.overheads import DEFAULT_PROFILE_MS, OVERHEAD_FIELDS
from ..models.record import Measured, MigrationRecord
from ..models.scenario import OverheadsSpec, Scenario
from ..models.units import bytes_s_to_mbit_s, bytes_to_mib
from ..runs.run_files import write_run
from .progress import ProgressLine
from .targets import Target, add_target_arguments, cannot_run_is_one_line, open_target

# the idle guest: a small written region (its first pass is pre-copy, not a fixed cost), no writes
IDLE_REGION_MIB = 8
DEFAULT_MEMORY_MIB = 256
DEFAULT_LINK_MBIT_S = 1000
MIGRATIONS = 3
# the link runs (testbed): the test guest half written, rewritten at 5,000 pages/s (it converges on
# every path below), on the scenario's shaped link and on the veth unshaped, each uncapped and capped
BUSY_ZERO_FRACTION = 0.5
BUSY_DIRTY_MIB_S = 19.53125
LINK_CAP_MIB_S = 32.0
REAL_HOSTS_NOT_FITTED = ("real hosts: their link cannot be shaped here and --domain's runs are idle "
                         "(their phases are QEMU's walk over zero pages, not the stream): keeps the "
                         "scenario's")
# enough latencies to tell an exponential switch (cv 1) from a constant or lognormal one: the sample
# cv's standard error is about cv / sqrt(2 n), 0.13 here
SWITCH_PROBES = 30
# lldpad holds a new request back while its last exchange's ECP timers still run (up to 164 ms on the
# testbed: requests sent back to back reached the switch 60-140 ms late); an idle station, as libvirt
# usually finds it, forwards at once
PROBE_GAP_S = 0.5


def register(p: argparse.ArgumentParser) -> None:
    p.description = ("Migrates an idle guest (on the testbed: the test guest writing nothing; on real "
                     "hosts: the --domain you name, which should be idle) REPEAT times and measures from "
                     "the daemons' logs what the engine calls begin, prepare (destination QEMU start), "
                     "setup, handshake, finish, resume and confirm (source teardown). Writes their "
                     "medians as an overheads profile (TOML) with their spreads, and in [measured] what "
                     "was measured: the domain, its memory, its written and zero pages (job stats "
                     "memory_normal / memory_constant), the migration stream's throughput, the mode and "
                     "both hosts' libvirt and QEMU versions. Then, on the testbed, it fits the link ([link] "
                     "efficiency and sender_mib_s for the live phase, final_copy_efficiency and "
                     "final_copy_sender_mib_s for the stop-and-copy, socket_backlog_mib) by least "
                     "squares over all runs' live phases and final copies, from four more runs of a busy "
                     "guest (the scenario's shaped link and the veth unshaped, each uncapped and capped "
                     f"at {LINK_CAP_MIB_S:g} MiB/s), and one more on a link shaped below QEMU's sender "
                     "where the sender, not the link, bound the shaped live phase. On real hosts, whose "
                     "link cannot be shaped and whose idle --domain sends no stream, [link] keeps the "
                     "scenario's, and the profile says so. "
                     "The migration's mode and flags come from "
                     "--scenario's [migration] (its timeout is ignored). A calibration belongs to the "
                     f"machines it was measured on. Cold starts: {COLD_START_RULE}.")
    p.epilog = ("Examples: pausecast calibrate --testbed --out examples/testbed-overheads.toml; then in a "
                "scenario: [overheads] profile = \"testbed-overheads.toml\". pausecast calibrate --switch "
                "--testbed --out results/switch.toml; then copy its [switch] into a scenario")
    p.add_argument("--scenario", metavar="S.toml",
                   help="take the migration's mode and flags ([migration]) from this scenario, and on the "
                        "testbed the VM size and the link (default: p2p; 256 MiB, 1000 Mbit/s)")
    p.add_argument("--repeat", type=int, metavar="N",
                   help=f"migrations to take the median of (default {MIGRATIONS}); with --switch, test "
                        f"associations to fit (default {SWITCH_PROBES})")
    p.add_argument("--out", metavar="PROFILE.toml",
                   help="the profile to write (default results/overheads.toml; with --switch "
                        "results/switch.toml)")
    p.add_argument("--overheads-only", action="store_true",
                   help="measure the fixed costs only: no link runs, no [link] fit")
    p.add_argument("--switch", action="store_true",
                   help="calibrate the switch instead: associate and disassociate a test VSI REPEAT times "
                        "through the source host's lldpad on the 802.1Qbg NIC's port (testbed: the VDP "
                        "emulator as 'pausecast testbed up --scenario' started it; real hosts: --src on "
                        "this machine and --domain's NIC), time each associate to the switch's answer on "
                        "the wire, and fit [switch] service_time_ms, service_distribution and service_cv "
                        "(constant, exponential or lognormal, by AIC). The test VSI has its own instance "
                        "id and MAC and is always disassociated. On the 802.1Qbh testbed: the same through "
                        "libvirt's kernel requests (RTM_SETLINK IFLA_PORT_SELF) on the source's link, "
                        "answered by its emulated VIC, read every 2 ms (no guest may use that link: it has "
                        "one port)")
    p.add_argument("--results", default="results", metavar="DIR",
                   help="where each calibration run's record goes (default: results)")
    add_target_arguments(p)
    p.set_defaults(handler=cannot_run_is_one_line(run))


def idle_scenario(base: Scenario | None) -> Scenario:
    """The calibration's scenario: the base's migration (mode, flags; no timeout: an idle guest converges)
    and, for the testbed's guest, its size and link; nothing written."""
    memory_mib = base.vm.memory_mib if base else DEFAULT_MEMORY_MIB
    link = {"bandwidth_mbit_s": base.link.bandwidth_mbit_s if base else DEFAULT_LINK_MBIT_S,
            "rtt_ms": base.link.rtt_ms if base else 0.0}
    idle = scenario_from_dict({
        "name": "calibration-idle",
        "vm": {"memory_mib": memory_mib, "zero_page_fraction": 1.0 - IDLE_REGION_MIB / memory_mib,
               "dirty": {"model": "constant", "rate_mib_s": 0.0}},
        "link": link, "overheads": {"profile": "none"}})
    if base is None:
        return idle
    return idle.replace(migration=dataclasses.replace(base.migration, timeout_s=0.0))


def run(args: argparse.Namespace) -> int:
    if args.switch:
        return run_switch(args)
    repeat = args.repeat or MIGRATIONS
    if repeat < 1:
        raise ScenarioError("--repeat", repeat, "expected an integer >= 1")
    scenario = idle_scenario(load_scenario(args.scenario) if args.scenario else None)
    target = open_target(args, scenario)
    records = []
    for i in range(repeat):
        progress = ProgressLine()
        m = target.run(scenario, on_sample=progress)
        progress.finish(m.record.migrated)
        write_run(m, args.results)
        costs = overheads_of(m.record)
        records.append(m.record)
        print(f"  run {i + 1}/{repeat}: " + ", ".join(f"{k[:-3]} {v:.0f}" for k, v in costs.items()) + " ms")
    cold = cold_start_runs(records)
    for i, why in cold.items():
        print(f"pausecast: run {i + 1} left out of the medians, a cold start: {why}", file=sys.stderr)
    used = [r for i, r in enumerate(records) if i not in cold]
    medians, spreads = combine([overheads_of(r) for r in used])
    out = Path(args.out or "results/overheads.toml")
    out.parent.mkdir(parents=True, exist_ok=True)
    measured = {**_measured(target, scenario, used), "runs": repeat, "runs_used": len(used),
                "left_out": [f"run {i + 1}: {why}" for i, why in cold.items()],
                "spread_ms": {k: [round(lo, 1), round(hi, 1)] for k, (lo, hi) in spreads.items()}}
    profile: dict = {"overheads": {k: round(medians[k], 1) for k in OVERHEAD_FIELDS}}
    if not args.overheads_only:
        costs = OverheadsSpec(profile="calibrated", **medians)
        fit = _fit_link(target, scenario, costs, args.results)
        profile["link"] = {k: round(v, 4) for k, v in fit.link_values().items()}
        measured["link_fit"] = {
            "rows": fit.rows, "standard_error": {k: round(v, 4) for k, v in fit.spreads.items()
                                                 if math.isfinite(v)},
            "not_fitted": fit.not_fitted,
            "residual_rms": round(float(np.sqrt(np.mean(np.square(fit.residuals)))), 4) if fit.rows else 0.0}
        print(format_link_fit(fit))
    profile["measured"] = measured
    header = ("# An overheads profile measured by `pausecast calibrate` (see\n"
              "# pausecast/analysis/calibration.py for what each cost spans). It belongs to the hosts\n"
              "# it was measured on ([measured]): calibrate again on others. Scenarios use it with\n"
              "# [overheads] profile = \"<this file>\", and take its [link] where their own [link] does\n"
              "# not set the field (validate --overheads: over theirs).\n")
    out.write_text(header + tomli_w.dumps(profile))
    print(format_profile(medians, spreads))
    print(f"\n  wrote {out}")
    target.say_where_the_domain_is()
    return 0


def link_scenarios(idle: Scenario) -> list[tuple[Scenario, bool]]:
    """The testbed's link runs: (scenario, whether its link is shaped)."""
    busy = idle.replace(vm=dataclasses.replace(
        idle.vm, zero_page_fraction=BUSY_ZERO_FRACTION,
        dirty=dataclasses.replace(idle.vm.dirty, rate_mib_s=BUSY_DIRTY_MIB_S, pattern="sweep")))
    out = []
    for bandwidth, shaped in ((idle.link.bandwidth_mbit_s, True), (float(UNSHAPED_MBIT_S), False)):
        for cap in (0.0, LINK_CAP_MIB_S):
            out.append((busy.replace(link=dataclasses.replace(busy.link, bandwidth_mbit_s=bandwidth),
                                     migration=dataclasses.replace(busy.migration, bandwidth_mib_s=cap)),
                        shaped))
    return out


def _fit_link(target: Target, idle: Scenario, costs: OverheadsSpec, results: str) -> LinkFit:
    """Runs the link runs (testbed only) and fits [link] over them. The idle runs are not fitted: with
    8 MiB to send, their phases are QEMU's walk over the zero pages (a few µs each on this kind of
    machine), not the stream. Where the sender was slower live than the shaped link (no shaped live
    phase was the link's), one more run shapes the link below the sender, so that one is."""
    from ..sim import predict

    if target.testbed is None:
        nan = dict.fromkeys(LINK_PARAMETERS, math.nan)
        return LinkFit(nan, dict(nan), dict.fromkeys(LINK_PARAMETERS, REAL_HOSTS_NOT_FITTED), 0, ())
    runs = [run for s, shaped in link_scenarios(idle) if (run := _link_run(target, s, shaped, results))]
    slower = below_the_sender(idle, [link_run(s, r, predict(s), shaped, w) for s, r, shaped, w in runs])
    if slower is not None:
        print(f"  no live phase was the shaped link's (the sender bound it, or both did): one more run at "
              f"{slower.link.bandwidth_mbit_s:g} Mbit/s")
        runs += [run for run in [_link_run(target, slower, True, results)] if run]
    return fit_link_runs([(s.replace(overheads=costs), r, shaped, w) for s, r, shaped, w in runs], predict)


def _link_run(target: Target, s: Scenario, is_shaped: bool, results: str):
    """One link run: (its scenario, its record, whether shaped, its final copy's bytes as measured), or
    None when it failed (said on stderr)."""
    progress = ProgressLine()
    m = target.run(s, on_sample=progress)
    progress.finish(m.record.migrated)
    write_run(m, results)
    if m.record.failure:
        print(f"pausecast: link run left out ({m.record.failure})", file=sys.stderr)
        return None
    where = f"{s.link.bandwidth_mbit_s:g} Mbit/s tbf" if is_shaped else "veth unshaped"
    cap = f"cap {s.migration.bandwidth_mib_s:g} MiB/s" if s.migration.bandwidth_mib_s else "uncapped"
    final_wire = final_wire_bytes_measured(m.record, [
        (t - m.t0_s, info.memory_processed_bytes, info.memory_bytes_s) for t, info in m.samples
        if info.active])
    print(f"  link run, {where}, {cap}: pre-copy {m.record.precopy_time_s:.3f} s, final copy "
          f"{m.record.final_copy_ms:.1f} ms ({bytes_to_mib(final_wire):.1f} MiB), "
          f"{m.record.iterations} iterations")
    return s, m.record, is_shaped, final_wire


def below_the_sender(idle: Scenario, runs: Sequence[LinkRun]) -> Scenario | None:
    """The extra link run where no uncapped shaped run's live phase was the link's
    (analysis/link_fit.py `live_bound`): the busy guest, uncapped, on a link shaped to
    SLOWER_LINK_SHARE of the sender's live rate (the slower of the unshaped path's and the fastest
    shaped live phase's; whole 10 Mbit/s, so the run's rate reads as chosen), at half the dirty rate so
    that it converges about as fast as the others; None where a shaped link bound a live phase already,
    or no uncapped shaped run was made."""
    shaped = [r for r in runs if r.shaped_mbit_s > 0 and not r.capped]
    sender_bytes_s = sender_live_bytes_s(runs)
    if not shaped or any(live_bound(r, sender_bytes_s) == "link" for r in shaped):
        return None
    # the slower of the sender's two showings: it sustains less than its best (its 100 ms rates dipped
    # to half its mean on the testbed)
    sustained_bytes_s = min(sender_bytes_s, max(live_rate_bytes_s(r) for r in shaped))
    busy, _ = link_scenarios(idle)[0]
    mbit_s = max(10.0, 10.0 * math.floor(bytes_s_to_mbit_s(SLOWER_LINK_SHARE * sustained_bytes_s) / 10.0))
    dirty = dataclasses.replace(busy.vm.dirty, rate_mib_s=busy.vm.dirty.rate_mib_s / 2)
    return busy.replace(name="calibration-below-sender",
                        link=dataclasses.replace(busy.link, bandwidth_mbit_s=mbit_s),
                        vm=dataclasses.replace(busy.vm, dirty=dirty))


def format_link_fit(fit: LinkFit) -> str:
    units = {"efficiency": "", "final_copy_efficiency": "", "socket_backlog_mib": " MiB",
             "sender_mib_s": " MiB/s", "final_copy_sender_mib_s": " MiB/s"}
    lines = [f"  [link] fitted over {fit.rows} phases (least squares; +- one standard error):"]
    for k, v in fit.values.items():
        if math.isfinite(v):
            lines.append(f"  {k:<20}{v:10.4g} +- {fit.spreads[k]:.2g}{units[k]}")
        else:
            lines.append(f"  {k:<20}{'not fitted':>10}: {fit.not_fitted.get(k, 'no rows')}")
    return "\n".join(lines)


def _measured(target: Target, scenario: Scenario, records: list[MigrationRecord]) -> dict:
    """What the profile was measured on: the domain and the stream as the runs saw them."""
    measured = [Measured.of(r) for r in records]

    def median_of(key: str, digits: int | None = None) -> dict[str, float]:
        """{key: the runs' median} where any run measured it (TOML has no NaN to say "not measured")."""
        value = median_finite([float(getattr(x, key)) for x in measured])
        return {key_in_profile[key]: round(value, digits)} if math.isfinite(value) else {}

    key_in_profile = {"domain_memory_mib": "memory_mib", "memory_normal_pages": "memory_normal_pages",
                      "memory_constant_pages": "memory_constant_pages", "stream_mib_s": "throughput_mib_s"}
    out = {"by": "pausecast calibrate", "target": target.describe,
           "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
           "domain": target.args.domain or GUEST_NAME, "mode": scenario.migration.mode,
           **median_of("domain_memory_mib", 1), **median_of("memory_normal_pages"),
           **median_of("memory_constant_pages"), **median_of("stream_mib_s", 1),
           "versions": measured[0].versions}
    if target.testbed is not None:
        out["guest"] = f"the test guest, {IDLE_REGION_MIB} MiB written, idle"
        out["link_mbit_s"] = scenario.link.bandwidth_mbit_s
    return out


def format_profile(medians: dict[str, float], spreads: dict[str, tuple[float, float]]) -> str:
    lines = [f"  {'cost':<14}{'median':>10}{'min':>10}{'max':>10}{'built-in':>10}  (ms)"]
    for k in OVERHEAD_FIELDS:
        lo, hi = spreads[k]
        lines.append(f"  {k:<14}{medians[k]:10.1f}{lo:10.1f}{hi:10.1f}{DEFAULT_PROFILE_MS[k]:10.1f}")
    return "\n".join(lines)


def run_switch(args: argparse.Namespace) -> int:
    from ..analysis.calibration import fit_switch
    from ..executor.migration.precheck import lldpad_client, probe_switch_latency

    repeat = args.repeat or SWITCH_PROBES
    if repeat < 2:
        raise ScenarioError("--repeat", repeat, "at least 2 associations to fit a distribution to")
    qbh = _qbh_testbed(args)
    if qbh is not None:
        latencies_ms, where = _fabric_latencies_ms(qbh, repeat)
    else:
        src, holder, nic, where = _switch_port(args)
        latencies_ms = []
        with lldpad_client(src, holder) as client:
            for _ in tqdm(range(repeat), unit="association", desc="switch", file=sys.stderr):
                time.sleep(PROBE_GAP_S)
                probe = probe_switch_latency(client, nic)
                if probe.associate.raw_ms is None:
                    raise ExecutorError("the switch's answers were not seen on the wire (watching it needs "
                                        "root): libvirt's 125 ms polls alone cannot be fitted")
                latencies_ms.append(probe.associate.raw_ms)
    fit = fit_switch(latencies_ms)
    x = np.asarray(latencies_ms)
    section = {"service_time_ms": round(fit.service_time_ms, 2),
               "service_distribution": fit.service_distribution}
    if fit.service_distribution == "lognormal":
        section["service_cv"] = round(fit.service_cv, 3)
    out = Path(args.out or "results/switch.toml")
    out.parent.mkdir(parents=True, exist_ok=True)
    measured = {"by": "pausecast calibrate --switch", "target": where, "associations": repeat,
                "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "latency_ms": {q: round(float(np.percentile(x, p)), 2)
                               for q, p in (("min", 0), ("p50", 50), ("p95", 95), ("max", 100))},
                "mean_ms": round(float(x.mean()), 2), "cv": round(float(x.std(ddof=1) / x.mean()), 3),
                "aic": {k: round(v, 1) for k, v in fit.aic.items()}}
    header = ("# The switch's service time fitted by `pausecast calibrate --switch` to test associations\n"
              "# (request -> the switch's answer on the wire). Copy [switch] into a scenario; capacity and\n"
              "# background load cannot be told from one station's requests and keep the scenario's.\n")
    out.write_text(header + tomli_w.dumps({"switch": section, "measured": measured}))
    m = measured["latency_ms"]
    print(f"  {repeat} associations on {where}: min {m['min']:.1f}, median {m['p50']:.1f}, "
          f"p95 {m['p95']:.1f}, max {m['max']:.1f} ms; mean {measured['mean_ms']:.1f} ms, "
          f"cv {measured['cv']:.2f}")
    print(f"  fitted [switch] {fit.service_distribution}, service_time_ms {fit.service_time_ms:.1f}"
          + (f", service_cv {fit.service_cv:.2f}" if fit.service_distribution == "lognormal" else "")
          + (f" (AIC {', '.join(f'{k} {v:.1f}' for k, v in fit.aic.items())})" if fit.aic else ""))
    print(f"\n  wrote {out}")
    return 0


def _qbh_testbed(args: argparse.Namespace):
    """The 802.1Qbh testbed --testbed names, if that is what is up there (else None)."""
    from ..executor.testbed.choice import testbed_for

    if not args.testbed:
        return None
    tb = testbed_for(Path(args.state_dir))
    return tb if tb.is_up() and tb.nic_port == "802.1Qbh" else None


def _fabric_latencies_ms(tb, repeat: int) -> tuple[list[float], str]:
    """Each test associate's latency on the 802.1Qbh testbed's source link, and where that was."""
    from ..executor.testbed.hosts import SRC
    from ..executor.vic.vic import SUCCESS

    print(f"  {repeat} test associations on {SRC}'s emulated VIC ...", file=sys.stderr)
    timed = tb.probe_fabric(repeat)
    failed = next((t for t in timed if t.response != SUCCESS), None)
    if failed is not None:
        raise ExecutorError(f"a test {failed.mode} was answered {failed.response} after "
                            f"{failed.latency_ms:.0f} ms (None: not within libvirt's 10 s): a refusing or "
                            "silent fabric cannot be fitted")
    return ([t.latency_ms for t in timed if t.mode == "associate"],
            f"testbed {tb.state_dir}, {SRC} emulated VIC")


def _switch_port(args: argparse.Namespace):
    """(source URI, testbed host holder pid or None, the 802.1Qbg NIC, where) for --switch."""
    from ..executor.migration.precheck import Nic, qbg_nic, read_domain
    from ..executor.testbed.choice import testbed_for
    from ..executor.testbed.qbg import MANAGER_ID, NIC_MAC, TYPE_ID, TYPE_ID_VERSION, VXLAN_IF

    if args.testbed:
        tb = testbed_for(Path(args.state_dir))
        if not (tb.is_up() and tb.nic_port == "802.1Qbg"):
            raise ExecutorError(f"no 802.1Qbg testbed up in {args.state_dir}: start one with "
                                "'pausecast testbed up --scenario examples/testbed-qbg.toml'")
        nic = Nic("direct", NIC_MAC, VXLAN_IF, "802.1Qbg", (MANAGER_ID, TYPE_ID, TYPE_ID_VERSION))
        return tb.src.uri, tb.src.holder_pid, nic, f"testbed {tb.state_dir}, {tb.src.name} {VXLAN_IF}"
    if not (args.src and args.domain):
        raise ScenarioError("target", "none",
                            "give --testbed, or --src and --domain (its 802.1Qbg NIC's port)")
    import libvirt

    try:
        conn = libvirt.openReadOnly(args.src)
        try:
            facts = read_domain(conn.lookupByName(args.domain))
        finally:
            conn.close()
    except libvirt.libvirtError as exc:
        raise ExecutorError(f"cannot read domain {args.domain!r} on {args.src}: {exc}") from None
    nic = qbg_nic(facts)
    return args.src, None, nic, f"{args.src} {nic.source_dev}"
