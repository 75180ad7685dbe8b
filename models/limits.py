"""The physical ranges of the inputs, and the budgets checked before any work.

A field's rule (models/schema.py) says what the model can compute with (memory > 0); a `Limit` says
what a real migration can be: past it the figures are nonsense (a 10^30 MiB guest), the floats
overflow, or a run never ends. Each limit gives its reason, which the one-line error repeats.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Limit:
    value: float
    # why no real migration goes past it: shown in the error
    why: str

    def __str__(self) -> str:
        """`16777216 (16 TiB, ...)`: whole numbers in full, as a user would type them."""
        shown = f"{self.value:.0f}" if self.value == int(self.value) else f"{self.value:g}"
        return f"{shown} ({self.why})"


# 16 TiB: the largest x86-64 guest QEMU 7.2 supports (and far past the 6 TiB RHEL supports for a
# KVM guest); beyond it a guest's page count leaves float's exact integers and the pause goes to 0 ms
MEMORY_MIB = Limit(16 * 2**20, "16 TiB, the largest x86 guest QEMU 7.2 supports")
# 1 TiB: a device's non-iterable state (virtio queues, CPU, a VFIO GPU's VRAM) is MiB to some
# hundred GiB; no device holds more than a terabyte
DEVICE_STATE_MIB = Limit(2**20, "1 TiB, more state than any device holds")
# 1 TiB/s: past any host's memory bandwidth (a 12-channel DDR5-6000 socket peaks near 576 GB/s), so
# no guest dirties pages faster
DIRTY_RATE_MIB_S = Limit(2**20, "1 TiB/s, past any host's memory bandwidth")
# KVM's KVM_MAX_VCPUS on x86-64 at its largest (CONFIG_KVM_MAX_NR_VCPUS, Linux 6.x)
VCPUS = Limit(4096, "KVM's largest vCPU count on x86-64")
# 1.6 Tbit/s: 1.6 Tb/s Ethernet (IEEE 802.3dj), the fastest link a host has
LINK_MBIT_S = Limit(1.6e6, "1.6 Tbit/s, the fastest Ethernet")
# 1 kbit/s: below it one 4 KiB page takes over half a minute; no live migration runs that slow,
# and much lower rates overflow the times to infinity
LINK_MIN_MBIT_S = Limit(0.001, "1 kbit/s, slower than any link a migration runs over")
# 1%: a stream left less of its link has stopped, not slowed (TCP's framing takes ~5%); with the
# slowest link it keeps a migration's times finite
EFFICIENCY = Limit(0.01, "1% of the line rate; less is a stopped stream")
# 10 s: 16 times a geostationary satellite's round trip (~0.6 s), the slowest path a TCP
# migration stream crosses; libvirt's keepalive (5 x 5 s) drops a connection slower than that
RTT_MS = Limit(10_000, "10 s, 16 times a geostationary satellite round trip")
# a year: a link change later than that falls after any evacuation's end (the largest, 10^4 VMs,
# takes hours)
LINK_CHANGE_AT_S = Limit(365 * 86400, "a year, later than any evacuation ends")
# 2 GiB: a socket's send buffer is an int of bytes (net.core.wmem_max <= INT_MAX)
SOCKET_BACKLOG_MIB = Limit(2048, "2 GiB, the largest send buffer Linux gives a socket")
# 1 TiB/s: no QEMU sender thread copies memory faster than the host's memory bandwidth (DIRTY_RATE_MIB_S)
SENDER_MIB_S = Limit(2**20, "1 TiB/s, past any host's memory bandwidth")
# 1 MiB/s: a sender slower than a page every 4 ms has stalled, not slowed; it keeps the times finite
SENDER_MIN_MIB_S = Limit(1, "1 MiB/s, slower than any working QEMU sender, or 0 = unbounded")
# QEMU migration/options.c MAX_MIGRATE_DOWNTIME_SECONDS: 2000 s
MAX_DOWNTIME_MS = Limit(2_000_000, "QEMU's largest downtime-limit, 2000 s")
# libvirt QEMU_DOMAIN_MIG_BANDWIDTH_MAX: INT64_MAX bytes/s in MiB/s, the largest speed it passes on
MIGRATION_MIB_S = Limit(2**63 // 2**20, "libvirt's largest migration speed (INT64_MAX bytes/s)")
# libvirt's migrate-setspeed counts whole MiB/s: 1 is its slowest cap (0 = unlimited)
MIGRATION_MIN_MIB_S = Limit(1, "libvirt's slowest speed cap, or 0 = unlimited")
# virsh migrate --timeout takes an int of seconds, from 1 (0 = none)
MIGRATION_TIMEOUT_S = Limit(2**31 - 1, "virsh's --timeout is an int of seconds")
MIGRATION_MIN_TIMEOUT_S = Limit(1, "virsh's --timeout counts whole seconds, or 0 = none")
# an hour: libvirt gives up on a switch after 10 s (compiled in); an hour is a switch that never
# answers, which is mode = "silent"
SWITCH_TIMEOUT_S = Limit(3600, "an hour; libvirt's own is 10 s")
SERVICE_TIME_MS = Limit(3_600_000, "an hour, the longest switch.timeout_s")
# a lognormal with cv 100 already answers nearly every request at once and a few after hours;
# beyond it its sigma = sqrt(ln(1 + cv^2)) overflows
SERVICE_CV = Limit(100, "a cv of 100 is already all tail")
# one association per 802.1Q VLAN ID at once; no switch serves more
SWITCH_CAPACITY = Limit(4094, "one per 802.1Q VLAN ID")
# 1000 requests/s: over three lldpads at their measured 3 ms each; every request is a simulated
# event, so more would spend the events budget on other tenants
BACKGROUND_PER_S = Limit(1000, "over three lldpads at their measured 3 ms a request")
# libvirt polls every 125 ms (compiled in). 1 ms: a shorter poll is a busy loop, and divides an
# answer's latency into more polls than floats count; an hour: such a poll never sees an answer in time
POLL_MIN_INTERVAL_MS = Limit(1, "1 ms; libvirt's own is 125 ms")
POLL_INTERVAL_MS = Limit(3_600_000, "an hour; libvirt's own is 125 ms")
# an hour: the slowest fixed cost measured is Confirm's 1.8 s; an hour is a hang, not an overhead
OVERHEAD_MS = Limit(3_600_000, "an hour; the slowest measured is 1.8 s")
# policy.time_scale: 10^-3 brings Nova's 0.5 s poll to 0.5 ms, about what one libvirt call takes; a
# faster clock would poll faster than the monitor loop can read the job's statistics
POLICY_TIME_SCALE = Limit(0.001, "Nova's 0.5 s poll becomes 0.5 ms, one libvirt call")
# an orchestrator's timeouts and step delays: a week; no evacuation waits longer for one VM
POLICY_SECONDS = Limit(7 * 24 * 3600, "a week; no evacuation waits longer for one VM")
# max downtime an orchestrator sets, in ms: QEMU migration/options.c caps downtime-limit at 2000 s
POLICY_DOWNTIME_MS = Limit(2_000_000, "QEMU's cap on downtime-limit, 2000 s")

# budgets, checked before any work: each is what a run of a few minutes on one host can do. A sweep
# file's `max_runs`, a fleet's `plan.max_vms` and `plan.max_events`, and predict's `--max-events`
# raise them.
# runs of a sweep (points x replicates): the fast path computes ~10^6 a second, and every run is a
# Parquet row (~400 bytes), so 10^7 runs are seconds of work and 4 GB of rows
SWEEP_RUNS = 10_000_000
# simulated migrations of a fleet sweep (runs x VMs of the fleet): the SimPy engine does ~10^3 a second
FLEET_SWEEP_MIGRATIONS = 1_000_000
# VMs of one fleet: 10^4 is a large cluster's evacuation; at ~70 SimPy events each they fit the
# events budget below
FLEET_VMS = 10_000
# SimPy events of one evacuation (~250,000 a second): ~70 per VM, the rest other tenants' requests
FLEET_EVENTS = 2_000_000
# SimPy events of one simulation (~250,000 a second): a migration needs tens; the rest are port
# requests and other tenants' background load
SIM_EVENTS = 1_000_000
# requests waiting at one switch: an overloaded switch (load x service time > capacity) has a line
# that only grows, and past 10^4 waiting even a 1 ms service keeps each new request 10 s in line,
# libvirt's whole timeout: every answer is already known to come too late
SWITCH_BACKLOG = 10_000
