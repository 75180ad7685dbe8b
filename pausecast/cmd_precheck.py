"""`pausecast precheck`: go / no-go for a real move, from the VM as it runs now."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

from . import default_scenario_path
from .models.scenario import load_scenario, scenario_to_toml
from .report import format_prediction, record_json
from .sim import predict
from .sim.advice import bandwidth_for_convergence_mbit_s, forced_alternatives, smallest_converging_downtime_ms

EXIT_GO, EXIT_NO_GO, EXIT_ERROR = 0, 1, 2


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "precheck", help="go / no-go for a real migration of a running domain",
        description="Reads the domain read-only from the source daemon (memory, vCPUs, NICs and their "
                    "<virtualport>, its current max downtime and speed), measures its dirty rate with "
                    "libvirt's dirty-rate calculation (or from the job stats when it is migrating "
                    "already), builds a scenario, predicts the move and prints GO / NO-GO with the "
                    "reasons, the predicted times and what would make it converge. Never changes the "
                    "domain or the hosts. Exit codes: 0 go, 1 no-go, 2 error.",
        epilog="Example: pausecast precheck web1 --src qemu+ssh://a/system --dst qemu+ssh://b/system "
               "--scenario my-link.toml --write-scenario web1.toml")
    p.add_argument("domain", nargs="?", help="the running domain (default with --testbed: its guest)")
    p.add_argument("--src", metavar="URI", help="source libvirt URI")
    p.add_argument("--dst", metavar="URI", help="destination libvirt URI (checked to be reachable)")
    p.add_argument("--testbed", action="store_true", help="the local testbed's two daemons")
    p.add_argument("--state-dir", default=None, metavar="DIR", help="the testbed's state directory")
    p.add_argument("--scenario", metavar="BASE.toml",
                   help="what the domain cannot tell: link, overheads profile (pausecast calibrate), "
                        "switch (default: the bundled default)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override one key of the base scenario (repeatable)")
    p.add_argument("--calc-seconds", type=float, default=3.0,
                   help="length of libvirt's dirty-rate calculation (default 3 s)")
    p.add_argument("--timeout-alternative-s", type=float, default=60.0,
                   help="for a no-go: predict a forced switchover after this long (default 60 s)")
    p.add_argument("--write-scenario", metavar="PATH", help="write the scenario built from the domain")
    p.add_argument("--json", action="store_true", help="print verdict, record and advice as JSON")
    p.set_defaults(handler=run)


def _endpoints(args: argparse.Namespace) -> tuple[str, str, str]:
    if args.testbed:
        from .executor.testbed import DEFAULT_STATE_DIR, Testbed
        from .executor.testbed_run import GUEST_NAME

        tb = Testbed(state_dir=Path(args.state_dir or DEFAULT_STATE_DIR))
        if not tb.is_up():
            raise LookupError(f"the testbed in {tb.state_dir} is not up ('pausecast testbed up')")
        return tb.src.uri, tb.dst.uri, args.domain or GUEST_NAME
    if not (args.src and args.dst and args.domain):
        raise LookupError("give DOMAIN --src URI --dst URI, or --testbed")
    return args.src, args.dst, args.domain


def run(args: argparse.Namespace) -> int:
    try:
        base = load_scenario(args.scenario or default_scenario_path(), args.overrides)
        src, dst, name = _endpoints(args)
        facts, dirty, scenario = _look(src, dst, name, base, args.calc_seconds)
    except (LookupError, OSError, RuntimeError) as exc:
        print(f"pausecast: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    record = predict(scenario)
    go = record.migrated
    reasons = _reasons(record, scenario)
    advice = _advice(scenario, record, args.timeout_alternative_s)
    if args.write_scenario:
        Path(args.write_scenario).write_text(scenario_to_toml(scenario))
    if args.json:
        row = json.loads(record_json(record))
        print(json.dumps({"verdict": "GO" if go else "NO-GO", "reasons": reasons, "record": row,
                          "dirty_rate": dataclasses.asdict(dirty), "domain": dataclasses.asdict(facts),
                          "advice": advice}, indent=2))
    else:
        print(f"{'GO' if go else 'NO-GO'}: {name} from {src} to {dst}")
        print("".join(f"  - {r}\n" for r in reasons), end="")
        print(f"  dirty rate {dirty.mib_s:.1f} MiB/s, measured by {dirty.source}")
        print()
        print(format_prediction(scenario, record))
        print()
        print("  advice")
        print("".join(f"  - {a}\n" for a in advice["lines"]), end="")
    return EXIT_GO if go else EXIT_NO_GO


def _look(src: str, dst: str, name: str, base, calc_s: float):
    """Everything read from the daemons, read-only: facts, dirty rate, and the scenario they make."""
    import libvirt

    from .executor.precheck import measure_dirty_rate, read_domain, scenario_for

    # libvirt prints every error it raises to stderr by default; ours are one line each
    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
    try:
        conn = libvirt.open(src)
        libvirt.openReadOnly(dst).close()
    except libvirt.libvirtError as exc:
        raise LookupError(f"cannot reach a daemon: {exc.get_error_message()}") from None
    try:
        try:
            dom = conn.lookupByName(name)
        except libvirt.libvirtError:
            raise LookupError(f"no domain {name!r} on {src}") from None
        if not dom.isActive():
            raise LookupError(f"domain {name!r} is not running on {src}")
        try:
            facts = read_domain(dom)
            dirty = measure_dirty_rate(conn, dom, calc_s)
        except libvirt.libvirtError as exc:
            raise LookupError(f"libvirt refused a read on {name!r}: {exc.get_error_message()}") from None
        return facts, dirty, scenario_for(base, facts, dirty)
    finally:
        conn.close()


def _reasons(record, scenario) -> list[str]:
    limit = scenario.migration.max_downtime_ms
    if record.failure == "not-converged":
        return [f"pre-copy never converges at max downtime {limit:g} ms: the guest dirties pages "
                "faster than the link drains them under that threshold"]
    if record.failure:
        return [f"the migration would fail: {record.failure}; the VM would stay on the source"]
    out = [f"converges after {record.iterations} iterations in {record.total_time_s:.1f} s"]
    if record.forced:
        out.append(f"only because the timeout forces the switchover ({record.forced})")
    out.append(f"frozen {record.pause_window_ms:.0f} ms, network cut off {record.network_outage_ms:.0f} ms")
    return out


def _advice(scenario, record, alternative_after_s: float) -> dict:
    lines = []
    smallest = smallest_converging_downtime_ms(scenario)
    needed = bandwidth_for_convergence_mbit_s(scenario)
    limit = scenario.migration.max_downtime_ms
    if smallest is None:
        lines.append("no max downtime up to 60 s converges at this dirty rate")
    elif smallest <= 1.0:
        lines.append("any max downtime converges at the measured dirty rate (the dirty rate is below the "
                     "migration rate, so passes shrink geometrically; tried down to 1 ms)")
    else:
        lines.append(f"smallest max downtime that converges at the measured dirty rate: {smallest:.0f} ms "
                     f"(set: {limit:g} ms)")
    if needed is None:
        lines.append(f"no link up to 800 Gbit/s makes {limit:g} ms converge")
    else:
        lines.append(f"bandwidth that makes {limit:g} ms converge: {needed:.0f} Mbit/s of line rate "
                     f"(set: {scenario.link.bandwidth_mbit_s:g} Mbit/s x {scenario.link.efficiency:g})")
    alternatives = []
    if not record.migrated:
        for alt in forced_alternatives(scenario, alternative_after_s):
            r = alt.record
            alternatives.append({"what": alt.what, "pause_window_ms": r.pause_window_ms,
                                 "total_time_s": r.total_time_s})
            lines.append(f"{alt.what}: frozen {r.pause_window_ms:.0f} ms, done in {r.total_time_s:.1f} s"
                         + (" (then pages fault in over the network)" if r.forced == "postcopy" else ""))
    lines.append("auto-converge (CPU throttling) is not modelled: its effect is not predicted here")
    return {"smallest_max_downtime_ms": smallest, "bandwidth_for_convergence_mbit_s": needed,
            "forced": alternatives, "lines": lines}
