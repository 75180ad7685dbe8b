"""An evacuation through the fleet engine, on one core. Target: < 10 s wall time.

The headline, `--scenario hall` (the default): a data hall of 20 racks with 10 hosts each. Racks r01-r10
are drained onto racks r11-r20, 10,000 VMs, 100 per source host. Hosts have 25 GbE NICs behind one
100 GbE uplink per rack; four switches (one per five racks) associate every 802.1Qbh port and serve
other tenants (20 requests/s each). At most 2 migrations leave a host at once and 40 run in all (what
fills the ten source uplinks). Both sides' hosts are dealt in the same order, so each source host
drains into one destination host and each source rack into one destination rack: ten separate parts
of the network, which the engine's max-min recomputes apart. Midway, r03's uplink fails: down at
600 s, back at 900 s; the migrations on it for longer than libvirt's keepalive lose their connection.
`--scenario racks`: the 1,000-VM evacuation of two racks onto one (`--vms` for other sizes).
Both mix 60 % web VMs, 30 % app VMs and 10 % databases whose hot set converges only with a large
share of the link (they stall while the uplinks are busy; a 15-minute timeout forces them over).
Run: .venv/bin/python benchmarks/bench_evacuate.py [--scenario hall|racks] [--vms N] [--seed 0]
"""

import argparse
import time

from machine import load_average

from pausecast.models.fleet import fleet_from_dict
from pausecast.sim.fleet import simulate_fleet

TARGET_S = 10.0
# other tenants' associations per second at each switch
BACKGROUND_PER_S = 20.0
PORTS = {"type": "802.1Qbh"}
PROFILES = {
    "web-4g": {"vm": {"memory_mib": 4096, "dirty": {"rate_mib_s": 50}}, "port_profile": PORTS},
    "app-8g": {"vm": {"memory_mib": 8192, "zero_page_fraction": 0.3, "dirty": {"rate_mib_s": 150}},
               "port_profile": PORTS},
    "db-16g": {"vm": {"memory_mib": 16384, "dirty": {"model": "hotcold", "hot_set_mib": 512,
                                                     "hot_rate_mib_s": 2048, "cold_rate_mib_s": 20}},
               "migration": {"timeout_s": 900, "timeout_action": "pause"}, "port_profile": PORTS},
}


def _switch() -> dict:
    return {"service_time_ms": 3, "service_distribution": "exponential", "capacity": 4,
            "background_load_per_s": BACKGROUND_PER_S}


def _vms(n_vms: int, sources: list[str], destinations: list[str]) -> list[dict]:
    counts = {"web-4g": n_vms * 6 // 10, "app-8g": n_vms * 3 // 10}
    counts["db-16g"] = n_vms - sum(counts.values())
    return [{"profile": name, "count": count, "source": sources, "destination": destinations}
            for name, count in counts.items()]


def data_hall(n_vms: int = 10_000, racks: int = 20, hosts_per_rack: int = 10) -> dict:
    """The fleet file's tables: half the racks drained onto the other half; rack 3's uplink down from
    600 s to 900 s."""
    rack_names = [f"r{r + 1:02d}" for r in range(racks)]
    links, hosts = {}, {}
    for r, rack in enumerate(rack_names):
        links[f"{rack}-up"] = {"bandwidth_mbit_s": 100_000}
        for h in range(hosts_per_rack):
            links[f"{rack}-h{h:02d}-nic"] = {"bandwidth_mbit_s": 25_000}
            hosts[f"{rack}-h{h:02d}"] = {"links": [f"{rack}-h{h:02d}-nic", f"{rack}-up"],
                                        "switch": f"vdp-{'abcd'[r * 4 // racks]}"}
    links["r03-up"]["changes"] = [{"at_s": 600, "bandwidth_mbit_s": 0},
                                  {"at_s": 900, "bandwidth_mbit_s": 100_000}]
    half = racks // 2
    # hosts listed rack by rack in turn, so that VMs dealt round-robin spread over every rack's uplink
    by_rack = [[f"{rack}-h{h:02d}" for rack in rack_names[r0:r0 + half]] for r0 in (0, half)
               for h in range(hosts_per_rack)]
    sources = [host for group in by_rack[:hosts_per_rack] for host in group]
    destinations = [host for group in by_rack[hosts_per_rack:] for host in group]
    return {
        "name": "bench-data-hall", "links": links, "hosts": hosts,
        "switches": {f"vdp-{c}": _switch() for c in "abcd"},
        "profiles": PROFILES,
        # 40 at once fill the ten source uplinks (4 x 25 GbE each); more would only share them thinner
        "plan": {"max_per_source_host": 2, "max_concurrent": 40},
        "vms": _vms(n_vms, sources, destinations),
    }


def two_racks(n_vms: int = 1000) -> dict:
    """The fleet file's tables: 10 source hosts in two racks (25 GbE NICs, a 40 GbE uplink per rack)
    onto 4 destinations (25 GbE behind a 100 GbE uplink); one switch."""
    sources = [f"src-{h}" for h in range(10)]
    destinations = [f"dst-{h}" for h in range(4)]
    links = {f"{host}-nic": {"bandwidth_mbit_s": 25000} for host in sources + destinations}
    links |= {"rack-a-up": {"bandwidth_mbit_s": 40000}, "rack-b-up": {"bandwidth_mbit_s": 40000},
              "rack-d-up": {"bandwidth_mbit_s": 100000}}
    hosts = {host: {"links": [f"{host}-nic", "rack-a-up" if i < 5 else "rack-b-up"], "switch": "vdp"}
             for i, host in enumerate(sources)}
    hosts |= {host: {"links": [f"{host}-nic", "rack-d-up"], "switch": "vdp"} for host in destinations}
    return {
        "name": "bench-evacuation", "links": links, "hosts": hosts, "switches": {"vdp": _switch()},
        # one switch's background load over a long makespan: ~280 events per VM at 10,000 VMs
        "profiles": PROFILES, "plan": {"max_per_source_host": 2, "max_events": 10_000_000},
        "vms": _vms(n_vms, sources, destinations),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", choices=("hall", "racks"), default="hall")
    parser.add_argument("--vms", type=int, default=0, help="VMs (default: 10,000 for hall, 1,000 for racks)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    build = data_hall if args.scenario == "hall" else two_racks
    fleet = fleet_from_dict(build(args.vms) if args.vms else build())
    before = load_average()
    start = time.perf_counter()
    result = simulate_fleet(fleet, args.seed)
    wall_s = time.perf_counter() - start
    after = load_average()
    s = result.summary
    verdict = "met" if wall_s < TARGET_S else "missed"
    print(f"{fleet.name}: evacuation of {s['vms']} VMs in {wall_s:.2f} s wall time: target < "
          f"{TARGET_S:.0f} s {verdict}; {s['events']} SimPy events = {s['events'] / wall_s:,.0f} events/s, "
          f"{s['vms'] / wall_s:.0f} VMs/s")
    print(f"  load average before: {before}\n  load average after:  {after}")
    print(f"  simulated makespan {s['makespan_s']:.0f} s; {s['migrated']} migrated, {s['failed']} failed "
          f"({', '.join(f'{k} x {n}' for k, n in s['failures'].items() if k != 'not-converged') or 'none'}), "
          f"{s['not_converged']} not converging; pause window p50 {s['pause_window_p50_ms']:.0f} ms, "
          f"p95 {s['pause_window_p95_ms']:.0f} ms, max {s['pause_window_max_ms']:.0f} ms; "
          f"peak switch queue {s['peak_switch_queue']}")
    for change in s.get("link_changes", []):
        print(f"  {change['link']} to {change['bandwidth_mbit_s']:g} Mbit/s at {change['at_s']:g} s: "
              f"{change['vms_crossing']} migrations on it")


if __name__ == "__main__":
    main()
