"""Port-profile latency as libvirt sees it (125 ms polls) and on the wire, through a real lldpad station,
against the VDP emulator (immediate and 300 ms service time) and against lldpad in bridge mode.

Each round pre-associates a fresh VSI (what migration Prepare does), then associates it (Finish) and
de-associates it. Needs root: it builds a pcvdp-bench lab (namespaces, veth, two lldpads).
Run: sudo .venv/bin/python benchmarks/bench_vdp.py [--rounds 5]
"""

import argparse
import statistics
import uuid

from machine import load_average

from pausecast.executor.testbed.lab import STATION_IF, VdpLab
from pausecast.executor.vdp.station import PortRequest, VsiProfile
from pausecast.models.scenario import SwitchSpec

GUEST_MAC = "52:54:00:88:00:01"


def rounds(lab: VdpLab, n: int) -> dict[str, list]:
    out: dict[str, list] = {"preassociate": [], "associate": []}
    with lab.client(raw_wait_s=2.0) as client:
        for _ in range(n):
            profile = VsiProfile(12, 1193047, 1, uuid.uuid4())
            for request in (PortRequest.PREASSOCIATE, PortRequest.ASSOCIATE):
                name = request.name.lower()
                result = client.request(STATION_IF, GUEST_MAC, profile, request)
                if not result.ok:
                    raise SystemExit(f"{name} failed: {result.error}")
                out[name].append(result)
            client.request(STATION_IF, GUEST_MAC, profile, PortRequest.DISASSOCIATE)
    return out


def show(label: str, results: dict[str, list]) -> None:
    for name, rs in results.items():
        observed = [r.observed_ms for r in rs]
        raw = [r.raw_ms for r in rs if r.raw_ms is not None]
        print(f"{label:<26} {name:<13} observed ms: mean {statistics.mean(observed):7.1f} "
              f"[{min(observed):6.1f}, {max(observed):6.1f}]  polls {sorted({r.polls for r in rs})}  "
              f"wire ms: mean {statistics.mean(raw):6.1f} [{min(raw):6.1f}, {max(raw):6.1f}]")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    print(f"load average before: {load_average()}")
    with VdpLab("bench") as lab:
        for service_ms in (0.0, 300.0):
            lab.start_emulator(SwitchSpec(service_time_ms=service_ms))
            show(f"emulator, {service_ms:g} ms service", rounds(lab, args.rounds))
        lab.start_lldpad_bridge()
        show("lldpad, evbmode = bridge", rounds(lab, args.rounds))
    print(f"load average after: {load_average()}")


if __name__ == "__main__":
    main()
