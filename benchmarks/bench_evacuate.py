"""An evacuation of 1,000 VMs through the fleet engine, on one core. Target: < 10 s wall time.

10 source hosts in two racks (25 GbE NICs behind a 40 GbE uplink per rack) drain onto 4 destinations
(25 GbE behind a 100 GbE uplink); every port is 802.1Qbh, associated by one switch that also serves
other tenants (20 requests/s). 600 web VMs, 300 app VMs and 100 databases whose hot set converges
only with a large share of the link (they stall while the uplink is busy; a 15-minute timeout forces
them over).
Run: .venv/bin/python benchmarks/bench_evacuate.py [--vms 1000] [--seed 0]
"""

import argparse
import time

from pausecast.models.fleet import Fleet, fleet_from_dict
from pausecast.sim.fleet import simulate_fleet

# other tenants' associations per second: over a makespan of ~1.5 h these are most of the events
BACKGROUND_PER_S = 20.0
SOURCES = [f"src-{h}" for h in range(10)]
DESTINATIONS = [f"dst-{h}" for h in range(4)]


def evacuation(n_vms: int) -> Fleet:
    links = {f"{host}-nic": {"bandwidth_mbit_s": 25000} for host in SOURCES + DESTINATIONS}
    links |= {"rack-a-up": {"bandwidth_mbit_s": 40000}, "rack-b-up": {"bandwidth_mbit_s": 40000},
              "rack-d-up": {"bandwidth_mbit_s": 100000}}
    hosts = {host: {"links": [f"{host}-nic", "rack-a-up" if i < 5 else "rack-b-up"], "switch": "vdp"}
             for i, host in enumerate(SOURCES)}
    hosts |= {host: {"links": [f"{host}-nic", "rack-d-up"], "switch": "vdp"} for host in DESTINATIONS}
    ports = {"type": "802.1Qbh"}
    profiles = {
        "web-4g": {"vm": {"memory_mib": 4096, "dirty": {"rate_mib_s": 50}}, "port_profile": ports},
        "app-8g": {"vm": {"memory_mib": 8192, "zero_page_fraction": 0.3, "dirty": {"rate_mib_s": 150}},
                   "port_profile": ports},
        "db-16g": {"vm": {"memory_mib": 16384, "dirty": {"model": "hotcold", "hot_set_mib": 512,
                                                         "hot_rate_mib_s": 2048, "cold_rate_mib_s": 20}},
                   "migration": {"timeout_s": 900, "timeout_action": "pause"}, "port_profile": ports},
    }
    counts = {"web-4g": n_vms * 6 // 10, "app-8g": n_vms * 3 // 10}
    counts["db-16g"] = n_vms - sum(counts.values())
    return fleet_from_dict({
        "name": "bench-evacuation", "links": links, "hosts": hosts,
        "switches": {"vdp": {"service_time_ms": 3, "service_distribution": "exponential", "capacity": 4,
                             "background_load_per_s": BACKGROUND_PER_S}},
        "profiles": profiles,
        "plan": {"max_per_source_host": 2},
        "vms": [{"profile": name, "count": count, "source": SOURCES, "destination": DESTINATIONS}
                for name, count in counts.items()],
    })


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vms", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    fleet = evacuation(args.vms)
    start = time.perf_counter()
    result = simulate_fleet(fleet, args.seed)
    wall_s = time.perf_counter() - start
    s = result.summary
    print(f"evacuation of {s['vms']} VMs: {wall_s:.2f} s wall time (target < 10 s), {s['events']} SimPy "
          f"events = {s['events'] / wall_s:,.0f} events/s, {s['vms'] / wall_s:.0f} VMs/s")
    print(f"  simulated makespan {s['makespan_s']:.0f} s; {s['migrated']} migrated, {s['failed']} failed, "
          f"{s['not_converged']} not converging; pause window p50 {s['pause_window_p50_ms']:.0f} ms, "
          f"p95 {s['pause_window_p95_ms']:.0f} ms, max {s['pause_window_max_ms']:.0f} ms; "
          f"peak switch queue {s['peak_switch_queue']}")


if __name__ == "__main__":
    main()
