"""`pausecast precheck`: go / no-go for a real move, from the VM as it runs now."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

from .. import default_scenario_path
from ..analysis.precheck import advice, rate_range, reasons, uncertainty
from ..models.errors import ScenarioError
from ..models.fieldpaths import check_value
from ..models.files import load_scenario, read_toml, scenario_to_toml
from ..models.scenario import Scenario
from ..report.text import format_prediction, record_json
from ..sim import predict

EXIT_GO, EXIT_NO_GO, EXIT_ERROR = 0, 1, 2


def register(p: argparse.ArgumentParser) -> None:
    p.description = ("Reads the domain read-only from the source daemon (memory, vCPUs, NICs and their "
                     "<virtualport>, its current max downtime and speed), measures its dirty rate with "
                     "libvirt's dirty-rate calculation (or from the job stats when it is migrating "
                     "already), builds a scenario, predicts the move and prints GO / NO-GO with the "
                     "reasons, the predicted times and what would make it converge. It predicts the "
                     "migration you will run: max downtime and bandwidth come from --max-downtime and "
                     "--bandwidth, else from --scenario's [migration] (or --set), else from the "
                     "domain's current settings, else the defaults; the report says which. Never "
                     "changes the domain or the hosts. Exit codes: 0 go, 1 no-go, 2 error, 3 cannot run "
                     "here (the executor extra is not installed).")
    p.epilog = ("Example: pausecast precheck web1 --src qemu+ssh://a/system --dst qemu+ssh://b/system "
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
    p.add_argument("--max-downtime", type=float, metavar="MS",
                   help="the max downtime the migration will run with, in ms (virsh migrate-setmaxdowntime)")
    p.add_argument("--bandwidth", type=float, metavar="MIB_S",
                   help="the bandwidth cap the migration will run with, in MiB/s, 0 = unlimited (virsh "
                        "migrate --bandwidth)")
    p.add_argument("--calc-seconds", type=float, default=3.0,
                   help="length of libvirt's dirty-rate calculation (default 3 s)")
    p.add_argument("--calc-runs", type=int, default=1, metavar="N",
                   help="run libvirt's calculation N times and take the mean: it samples 512 pages per "
                        "GiB, so one run is off by about sqrt(2 x rate / seconds) MiB/s (one standard "
                        "error), and N runs divide that by sqrt(N) (default 1)")
    p.add_argument("--timeout-alternative-s", type=float, default=60.0,
                   help="for a no-go: predict a forced switchover after this long (default 60 s)")
    p.add_argument("--probe-switch", action="store_true",
                   help="where the NIC has an 802.1Qbg port: time a test VSI's associate and disassociate "
                        "(its own instance UUID and MAC) through the source's lldpad (local or testbed "
                        "source only) and use the raw associate latency as switch.service_time_ms")
    p.add_argument("--measure-link", action="store_true",
                   help="testbed only: measure achievable TCP throughput between the hosts for ~2 s and "
                        "use it as link.bandwidth_mbit_s (efficiency 1.0)")
    p.add_argument("--write-scenario", metavar="PATH", help="write the scenario built from the domain")
    p.add_argument("--json", action="store_true", help="print verdict, record and advice as JSON")
    p.set_defaults(handler=run)


def _endpoints(args: argparse.Namespace):
    """Source URI, destination URI, domain name, and the testbed (None for real hosts)."""
    if args.measure_link and not args.testbed:
        raise LookupError("--measure-link works on the testbed only (--testbed)")
    if args.testbed:
        from ..executor.testbed.hosts import DEFAULT_STATE_DIR, Testbed
        from ..executor.testbed.run import GUEST_NAME

        tb = Testbed(state_dir=Path(args.state_dir or DEFAULT_STATE_DIR))
        if not tb.is_up():
            raise LookupError(f"the testbed in {tb.state_dir} is not up ('pausecast testbed up')")
        return tb.src.uri, tb.dst.uri, args.domain or GUEST_NAME, tb
    if not (args.src and args.dst and args.domain):
        raise LookupError("give DOMAIN --src URI --dst URI, or --testbed")
    return args.src, args.dst, args.domain, None


# the flags that state the migration, by the scenario field each sets (the fields a live domain
# carries too: executor.precheck.DOMAIN_SETTINGS)
MIGRATION_FLAGS = {"max_downtime_ms": "--max-downtime", "bandwidth_mib_s": "--bandwidth"}


def operator_base(args: argparse.Namespace) -> tuple[Scenario, dict[str, str]]:
    """The base scenario with the flags' migration settings, and which of MIGRATION_FLAGS' settings the
    operator stated, and where: a flag, then --set, then the --scenario file; the domain fills the rest."""
    path = args.scenario or default_scenario_path()
    stated: dict[str, str] = {}
    flag_sets = []
    for name, flag in MIGRATION_FLAGS.items():
        value = getattr(args, flag[2:].replace("-", "_"))
        if value is not None:
            flag_sets.append(f"migration.{name}={check_value(f'migration.{name}', value, flag)!r}")
            stated[name] = flag
    for item in args.overrides:
        stated.setdefault(item.partition("=")[0].strip().removeprefix("migration."), "--set")
    if args.scenario:
        for name in read_toml(path, "scenario file").get("migration", {}):
            stated.setdefault(name, f"--scenario {args.scenario}")
    base = load_scenario(path, args.overrides + flag_sets)
    return base, {name: where for name, where in stated.items() if name in MIGRATION_FLAGS}


def run(args: argparse.Namespace) -> int:
    try:
        base, stated = operator_base(args)
        if args.calc_runs < 1:
            raise ScenarioError("--calc-runs", args.calc_runs, "at least 1")
        src, dst, name, tb = _endpoints(args)
        facts, dirty, probe = _look(src, dst, name, args.calc_seconds, args.calc_runs, args.probe_switch, tb)
        link = None
        if args.measure_link:
            from ..executor.migration.precheck import measure_link

            link = measure_link(tb)
    except (LookupError, OSError, RuntimeError) as exc:
        print(f"pausecast: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    from ..executor.migration.precheck import migration_for, scenario_for

    scenario = scenario_for(base, facts, dirty, stated=stated,
                            switch_service_ms=probe.service_time_ms if probe else None,
                            link_mbit_s=link.mbit_s if link else None)
    _migration, sources = migration_for(base.migration, facts, stated)
    record = predict(scenario)
    go = record.migrated
    spread = rate_range(scenario, dirty.mib_s, dirty.stderr_mib_s)
    why = reasons(record, scenario) + (uncertainty(spread, go) if spread else [])
    advised = advice(scenario, record, args.timeout_alternative_s)
    if args.write_scenario:
        Path(args.write_scenario).write_text(scenario_to_toml(scenario))
    if args.json:
        row = json.loads(record_json(record))
        print(json.dumps({"verdict": "GO" if go else "NO-GO", "reasons": why, "record": row,
                          "dirty_rate": dataclasses.asdict(dirty), "dirty_rate_range": spread,
                          "domain": dataclasses.asdict(facts),
                          "sources": {f"migration.{k}": v for k, v in sources.items()},
                          "advice": advised,
                          "switch_probe": _probe_json(probe) if probe else None,
                          "link_measurement": dataclasses.asdict(link) if link else None}, indent=2))
    else:
        print(f"{'GO' if go else 'NO-GO'}: {name} from {src} to {dst}")
        print("".join(f"  - {r}\n" for r in why), end="")
        print(f"  dirty rate {_rate_text(dirty)}, measured by {dirty.source}")
        mig = scenario.migration
        print(f"  max downtime {mig.max_downtime_ms:g} ms from {sources['max_downtime_ms']}; bandwidth "
              + (f"{mig.bandwidth_mib_s:g} MiB/s" if mig.bandwidth_mib_s else "unlimited")
              + f" from {sources['bandwidth_mib_s']}")
        if spread:
            print(f"  {_range_text(spread)}")
        if probe:
            print("".join(f"  {line}\n" for line in _probe_lines(probe)), end="")
        if link:
            print(f"  link MEASURED: {link.mbit_s:.0f} Mbit/s of TCP payload ({link.source}); used as "
                  "link.bandwidth_mbit_s with efficiency 1.0")
        print()
        print(format_prediction(scenario, record))
        print()
        print("  advice")
        print("".join(f"  - {a}\n" for a in advised["lines"]), end="")
    return EXIT_GO if go else EXIT_NO_GO


def _look(src: str, dst: str, name: str, calc_s: float, calc_runs: int, probe_switch: bool, tb):
    """Everything read from the daemons, read-only: facts, dirty rate, and the switch probe if asked."""
    import libvirt

    from ..executor.migration.precheck import (
        lldpad_client,
        measure_dirty_rate,
        probe_switch_latency,
        qbg_nic,
        read_domain,
    )

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
            dirty = measure_dirty_rate(conn, dom, calc_s, calc_runs)
        except libvirt.libvirtError as exc:
            raise LookupError(f"libvirt refused a read on {name!r}: {exc.get_error_message()}") from None
        if not probe_switch:
            return facts, dirty, None
        nic = qbg_nic(facts)
        with lldpad_client(src, tb.src.holder_pid if tb else None) as client:
            return facts, dirty, probe_switch_latency(client, nic)
    finally:
        conn.close()


def _rate_text(dirty) -> str:
    if not dirty.stderr_mib_s:
        return f"{dirty.mib_s:.1f} MiB/s"
    runs = f", runs {', '.join(f'{v:g}' for v in dirty.runs_mib_s)}" if len(dirty.runs_mib_s) > 1 else ""
    return f"{dirty.mib_s:.1f} +- {dirty.stderr_mib_s:.1f} MiB/s (one standard error of page sampling{runs})"


def _range_text(spread: dict) -> str:
    ends = [f"at {rate:.1f} MiB/s " + (f"done in {total:.1f} s, frozen {pause:.0f} ms" if migrated
                                       else "it would not move")
            for rate, migrated, total, pause in zip(spread["dirty_rate_mib_s"], spread["migrated"],
                                                    spread["total_time_s"], spread["pause_window_ms"],
                                                    strict=True)]
    return f"estimate -+{spread['stderrs']:g} standard errors: " + "; ".join(ends)


def _probe_json(probe) -> dict:
    return {"port": probe.port, "instance_uuid": probe.instance_uuid,
            "service_time_ms": probe.service_time_ms,
            **{kind: {"observed_ms": r.observed_ms, "raw_ms": r.raw_ms, "polls": r.polls}
               for kind, r in (("associate", probe.associate), ("disassociate", probe.disassociate))}}


def _probe_lines(probe) -> list[str]:
    def ms(v: float | None) -> str:
        return "not watched" if v is None else f"{v:.0f} ms"

    a, d = probe.associate, probe.disassociate
    used = "raw associate latency" if a.raw_ms is not None else "polled associate latency (no wire watch)"
    return [f"switch MEASURED on {probe.port} with test VSI {probe.instance_uuid} (disassociated after):",
            f"  associate    observed {a.observed_ms:.0f} ms at 125 ms polls ({a.polls} polls), "
            f"raw {ms(a.raw_ms)}",
            f"  disassociate observed {d.observed_ms:.0f} ms ({d.polls} polls), raw {ms(d.raw_ms)}",
            f"  switch.service_time_ms = {probe.service_time_ms:.0f} ms: the {used}, nothing subtracted"]
