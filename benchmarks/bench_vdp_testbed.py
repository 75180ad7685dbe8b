"""The port-profile types on the testbed: how the switch's service time shows in a real migration's
Prepare, pause window and network outage, 802.1Qbg (lldpad and the VDP emulator) beside 802.1Qbh (the
emulated VIC), against the simulator. Root; about a minute per repeat and port type.
Run: .venv/bin/python benchmarks/bench_vdp_testbed.py [--added-ms 300] [--repeat 2]
         [--port 802.1Qbg --port 802.1Qbh] [--figure docs/port-profile-windows.png] [--json out.json]
"""

import argparse
import dataclasses
import json
import statistics
from pathlib import Path

from machine import load_average

from pausecast.executor.testbed.qbg import VdpTestbed
from pausecast.executor.testbed.qbh import QbhTestbed
from pausecast.executor.testbed.run import run_on_testbed
from pausecast.models.files import load_scenario
from pausecast.models.scenario import SwitchSpec
from pausecast.report.port_windows import PortWindows, port_windows_figure
from pausecast.sim.engine import predict

SCENARIO = Path(__file__).resolve().parent.parent / "examples" / "testbed-small.toml"
GUEST = "pausecast-port-bench"
# the simulator's stand-in for the wire and lldpad's own answer, which the VDP emulator's 0 ms leaves;
# the emulated VIC answers its UNIX socket before libvirt's first read
WIRE_MS = {"802.1Qbg": 3.0, "802.1Qbh": 0.0}
TESTBEDS = {"802.1Qbg": VdpTestbed, "802.1Qbh": QbhTestbed}


def measure(port: str, added_ms: float, repeat: int, state_dir: Path) -> list[PortWindows]:
    base = load_scenario(SCENARIO)
    tb = TESTBEDS[port](state_dir=state_dir, switch=SwitchSpec(service_time_ms=0.0))
    tb.down()
    tb.up()
    rows = []
    try:
        for service_ms in (0.0, added_ms):
            spec = dataclasses.replace(base.switch, service_time_ms=service_ms, capacity=1)
            scenario = base.replace(port_profile=dataclasses.replace(base.port_profile, type=port),
                                    switch=spec)
            prepares, pauses, outages, waits = [], [], [], []
            for _ in range(repeat):
                tb.restart_switch(spec)
                r = run_on_testbed(tb, scenario, name=GUEST, keep_guest=True).record
                prepares.append((r.prepare_end_s - r.prepare_start_s) * 1000)
                pauses.append(r.pause_window_ms)
                outages.append(r.network_outage_ms)
                waits.append(r.association_wait_ms)
                tb.destroy_guest(GUEST)
            p = predict(scenario.replace(
                switch=dataclasses.replace(spec, service_time_ms=WIRE_MS[port] + service_ms)))
            rows.append(PortWindows(port, service_ms, tuple(pauses), tuple(outages), p.pause_window_ms,
                                    p.network_outage_ms))
            print(f"{port} switch {service_ms:5.0f} ms: Prepare {statistics.median(prepares):6.0f} ms, "
                  f"pause {[round(x) for x in pauses]} ms, association wait {[round(x) for x in waits]} ms, "
                  f"outage {[round(x) for x in outages]} ms | simulated: Prepare "
                  f"{(p.prepare_end_s - p.prepare_start_s) * 1000:.0f} ms, pause {p.pause_window_ms:.0f} ms, "
                  f"association wait {p.association_wait_ms:.0f} ms, outage {p.network_outage_ms:.0f} ms",
                  flush=True)
    finally:
        tb.destroy_guest(GUEST)
        tb.down()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--added-ms", type=float, default=300.0)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--port", action="append", choices=sorted(TESTBEDS),
                        help="the port types to measure (default both)")
    parser.add_argument("--state-dir", type=Path, default=Path("/var/lib/pausecast-testbed-port-bench"))
    parser.add_argument("--figure", type=Path, help="draw the windows side by side into this PNG or SVG")
    parser.add_argument("--json", type=Path, help="write the rows as JSON here")
    args = parser.parse_args()
    print(f"load average before: {load_average()}")
    rows = [row for port in (args.port or sorted(TESTBEDS))
            for row in measure(port, args.added_ms, args.repeat, args.state_dir)]
    print(f"load average after: {load_average()}")
    if args.json:
        args.json.write_text(json.dumps([dataclasses.asdict(r) for r in rows], indent=1))
    if args.figure:
        port_windows_figure(rows).savefig(args.figure, dpi=110)
        print(f"wrote {args.figure}")


if __name__ == "__main__":
    main()
