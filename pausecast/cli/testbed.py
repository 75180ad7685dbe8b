"""`pausecast testbed up|down|status`: the local two-host libvirt testbed (executor/testbed/hosts.py)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..executor.testbed.choice import testbed_for
from ..executor.testbed.hosts import DEFAULT_STATE_DIR
from ..executor.testbed.run import shape_for
from ..models.errors import ScenarioError
from ..models.files import load_scenario
from ..runs.json_text import strict_json
from .targets import cannot_run_is_one_line


def register(p: argparse.ArgumentParser) -> None:
    p.description = ("Two libvirt daemons on this machine, each in its own namespaces (its own hostname, "
                     "host UUID, /run, /etc/libvirt), joined by a veth pair shaped with tc; QEMU uses KVM "
                     "where it works and TCG otherwise. 'down' leaves no process, mount, namespace or link "
                     "behind and is safe to run twice or after a crash. Needs root.")
    p.epilog = ("Examples: pausecast testbed up --scenario examples/testbed-small.toml; "
                "pausecast testbed status --json; pausecast testbed down")
    p.add_argument("action", choices=("up", "down", "status"))
    p.add_argument("--scenario", metavar="S.toml",
                   help="up: shape the link from the scenario's [link] (bandwidth; a delay only where the "
                        "kernel can add one); with [port_profile] type = \"802.1Qbg\", also give each host "
                        "an lldpad and the guest's NIC an 802.1Qbg port, and start the VDP switch emulator "
                        "as the scenario's [switch] says (service time, distribution, capacity, background "
                        "load, mode); with \"802.1Qbh\", give the guest's NIC an 802.1Qbh port on an "
                        "emulated VIC (a VIC emulator per host playing [switch], libvirtd's port-profile "
                        "netlink answered for it). A testbed already up is only reshaped, and its switch "
                        "restarted as the scenario's [switch]")
    p.add_argument("--state-dir", default=str(DEFAULT_STATE_DIR), metavar="DIR",
                   help=f"where the testbed keeps its state (default {DEFAULT_STATE_DIR})")
    p.add_argument("--virt-type", choices=("auto", "kvm", "qemu"), default="auto",
                   help="up: the accelerator (default auto: KVM if it is fast enough, else TCG)")
    p.add_argument("--keep-logs", metavar="DIR", help="down: copy the daemons' and guests' logs here first")
    p.add_argument("--json", action="store_true", help="status: print it as JSON")
    p.set_defaults(handler=cannot_run_is_one_line(run))


def run(args: argparse.Namespace) -> int:
    scenario = load_scenario(args.scenario) if args.scenario and args.action == "up" else None
    tb = testbed_for(Path(args.state_dir), scenario, virt_type=args.virt_type)
    if args.action == "down":
        report = tb.down(keep_logs=args.keep_logs)
        left = {k: v for k, v in report["leftovers"].items() if v}
        print(f"testbed down: stopped {len(report['killed'])} processes"
              + (f"; LEFT BEHIND: {left}" if left else "; nothing left behind"))
        return 1 if left else 0
    if args.action == "up":
        already = tb.is_up()
        if already:
            print(f"testbed already up in {tb.state_dir}", file=sys.stderr)
        else:
            tb.up()
        if scenario is not None:
            try:
                rtt_ms = shape_for(tb, scenario)
            except ScenarioError:
                if not already:
                    tb.down()
                raise
            print(f"link shaped for {args.scenario}: {scenario.link.bandwidth_mbit_s:g} Mbit/s, "
                  f"measured RTT {rtt_ms:.3f} ms", file=sys.stderr)
    status = tb.status()
    if args.json:
        print(json.dumps(strict_json(status), indent=2))
    else:
        print(format_status(status))
    return 0 if status["up"] or args.action == "status" else 1


def format_status(st: dict) -> str:
    if not st.get("hosts"):
        left = {k: v for k, v in st.get("leftovers", {}).items() if v}
        return f"testbed {st['state_dir']}: down" + (f" (left behind: {left})" if left else "")
    link = st["link"]
    lines = [f"testbed {st['state_dir']}: {'up' if st['up'] else 'BROKEN'}, {st['virt_type']} "
             f"({st['virt_reason']})",
             f"  link {link['subnet']}: {link['bandwidth_mbit_s'] or 'unshaped'} Mbit/s, "
             f"added RTT {link['rtt_ms']:g} ms"]
    for name, h in st["hosts"].items():
        state = "ok" if h["holder_alive"] and h["libvirtd_alive"] else "DOWN"
        domains = ", ".join(f"{d} {s}" for d, s in (h["domains"] or {}).items()) or "no domains"
        lines.append(f"  {name:<7} {h['address']:<12} libvirtd {state}  {h['uri']}  ({domains})")
    if (sw := st.get("switch")) is not None:
        what, where = (("802.1Qbh fabric (emulated VIC)", "a VIC emulator and libvirtd's netlink shim on "
                        "each host") if st.get("nic_port") == "802.1Qbh" else
                       ("802.1Qbg switch (VDP emulator)", "lldpad on each host"))
        lines.append(f"  {what}: {sw['service_time_ms']:g} ms {sw['service_distribution']} service, "
                     f"capacity {sw['capacity']}, background {sw['background_load_per_s']:g} requests/s, "
                     f"mode {sw['mode']}; {where}")
    return "\n".join(lines)
