"""802.1Qbg on the testbed: how the switch's service time shows in a real migration's Prepare and in the
network outage after the pause, against the simulator. Root; about a minute per repeat.
Run: .venv/bin/python benchmarks/bench_vdp_testbed.py [--added-ms 300] [--repeat 2]
"""

import argparse
import dataclasses
import statistics
from pathlib import Path

from pausecast.executor.testbed.qbg import VdpTestbed
from pausecast.executor.testbed.run import run_on_testbed
from pausecast.models.files import load_scenario
from pausecast.models.scenario import SwitchSpec
from pausecast.sim.engine import predict

SCENARIO = Path(__file__).resolve().parent.parent / "examples" / "testbed-small.toml"
GUEST = "pausecast-vdp-bench"
# the simulator's stand-in for the wire and lldpad's own answer, which the emulator's 0 ms leaves
WIRE_MS = 3.0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--added-ms", type=float, default=300.0)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--state-dir", type=Path, default=Path("/var/lib/pausecast-testbed-vdp"))
    args = parser.parse_args()
    scenario = load_scenario(SCENARIO)
    tb = VdpTestbed(state_dir=args.state_dir, switch=SwitchSpec(service_time_ms=0.0))
    tb.down()
    tb.up()
    try:
        for service_ms in (0.0, args.added_ms):
            prepares, pauses, outages = [], [], []
            for _ in range(args.repeat):
                tb.restart_switch(SwitchSpec(service_time_ms=service_ms))
                m = run_on_testbed(tb, scenario, name=GUEST, keep_guest=True)
                r = m.record
                prepares.append((r.prepare_end_s - r.prepare_start_s) * 1000)
                pauses.append(r.pause_window_ms)
                # measured by the executor: the switch's answer to Finish's associate and the guest's
                # first frame at the destination's port
                outages.append(r.network_outage_ms)
                tb.destroy_guest(GUEST)
            qbg = dataclasses.replace(
                scenario, port_profile=dataclasses.replace(scenario.port_profile, type="802.1Qbg"),
                switch=dataclasses.replace(scenario.switch, service_time_ms=WIRE_MS + service_ms))
            p = predict(qbg)
            print(f"switch {service_ms:5.0f} ms: Prepare {statistics.median(prepares):6.0f} ms "
                  f"(runs {[round(x) for x in prepares]}), pause {[round(x) for x in pauses]} ms, "
                  f"outage {[round(x) for x in outages]} ms | simulated: Prepare "
                  f"{(p.prepare_end_s - p.prepare_start_s) * 1000:.0f} ms, pause {p.pause_window_ms:.0f} ms, "
                  f"outage {p.network_outage_ms:.0f} ms")
    finally:
        tb.destroy_guest(GUEST)
        tb.down()


if __name__ == "__main__":
    main()
