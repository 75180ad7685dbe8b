"""The link between the testbed's hosts, shaped with tc: tbf for the bandwidth, netem for the delay
(rtt/2 each way) where the kernel has sch_netem (this project's CI kernel does not: asking for an RTT
there raises)."""

from __future__ import annotations

from .procs import run


def shaping_commands(dev: str, bandwidth_mbit_s: float | None, rtt_ms: float) -> list[list[str]]:
    """tc commands that shape one direction of the link (run after deleting the root qdisc).

    Rate: tbf, with a bucket of at least one 64 KiB GSO packet and 2 ms of traffic (the kernel's timer
    granularity is 4 ms at HZ=250), and a 25 ms queue. Delay (rtt/2 per direction): netem, as tbf's child
    when both are set. Some kernels (this project's CI machine's among them) have no sch_netem: then
    asking for an RTT raises rather than silently giving a zero-delay link."""
    cmds: list[list[str]] = []
    parent = ["root"]
    if bandwidth_mbit_s:
        burst = max(65536 + 1514, int(bandwidth_mbit_s * 1e6 / 8 * 0.002))
        cmds.append(["tc", "qdisc", "add", "dev", dev, "root", "handle", "1:", "tbf",
                     "rate", f"{bandwidth_mbit_s:g}mbit", "burst", str(burst), "latency", "25ms"])
        parent = ["parent", "1:1"]
    if rtt_ms > 0:
        pkts = (bandwidth_mbit_s or 10_000) * 1e6 / 8 * (rtt_ms / 1000 + 0.01) / 1500
        cmds.append(["tc", "qdisc", "add", "dev", dev, *parent, "handle", "10:", "netem",
                     "delay", f"{rtt_ms / 2:.3f}ms", "limit", str(max(1000, int(4 * pkts)))])
    return cmds


def netem_available() -> bool:
    """Whether this kernel can delay packets (sch_netem), tried in a throwaway network namespace."""
    r = run(["unshare", "--net", "tc", "qdisc", "add", "dev", "lo", "root", "netem", "delay", "1ms"],
            check=False)
    return r.returncode == 0
