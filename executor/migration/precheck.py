"""The pre-check's view of a live domain: read-only facts, a measured dirty rate, and the scenario
they make. Nothing here changes the domain or the hosts: no migration parameter is set and no XML is
touched (libvirt's dirty-rate calculation only samples guest pages). The optional probes are read-only
for the domain too: the switch probe associates a test VSI of its own and always disassociates it, and the
link probe sends a few seconds of TCP between the testbed's hosts."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import sys
import threading
import time
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...models.scenario import MigrationSpec, Scenario
from ...models.units import bytes_s_to_mbit_s, pages_s_to_mib_s
from ..vdp.station import LldpadClient, PortRequest, PortResult, VsiProfile
from .jobinfo import JOB_UNBOUNDED, JobInfo
from .migrate import ExecutorError

# libvirt reports "unlimited" migration speed as LLONG_MAX bytes/s in MiB/s
UNLIMITED_SPEED_MIB_S = (2**63 - 1) >> 20
_UNIT_MIB = {"b": 2**-20, "bytes": 2**-20, "k": 2**-10, "kib": 2**-10, "kb": 1e3 / 2**20, "m": 1.0,
             "mib": 1.0, "mb": 1e6 / 2**20, "g": 1024.0, "gib": 1024.0, "gb": 1e9 / 2**20,
             "t": 2.0**20, "tib": 2.0**20}
# VIR_DOMAIN_DIRTYRATE_MEASURED
_DIRTYRATE_MEASURED = 2
# QEMU migration/dirtyrate.c, page-sampling mode: 512 sampled pages per GiB of each RAM block
# (DIRTYRATE_DEFAULT_SAMPLE_PAGES; libvirt cannot change it), so each sampled page stands for 2 MiB and
# one dirty sample adds 2 MiB / period to the result, which QEMU then floors to whole MiB/s.
SAMPLED_MIB_PER_PAGE = 1024 / 512
# a migration job reports a dirty rate from its second bitmap sync on (QEMU's dirty-sync-count)
_JOB_RATE_FROM_ITERATION = 2


@dataclass(frozen=True)
class Nic:
    type: str
    mac: str
    source_dev: str
    virtualport: str  # "" | "802.1Qbg" | "802.1Qbh" | ...
    # an 802.1Qbg port's (manager id, type id, type id version): what a test VSI must carry to be accepted
    vsi_type: tuple[int, int, int] | None = None


@dataclass(frozen=True)
class DomainFacts:
    name: str
    uuid: str
    memory_mib: float
    vcpus: int
    nics: tuple[Nic, ...]
    max_downtime_ms: float | None = None
    max_speed_mib_s: float | None = None

    @property
    def port_profile(self) -> tuple[str, int]:
        """The vNICs' port-profile type and how many NICs carry it (libvirt associates each)."""
        kinds = [n.virtualport for n in self.nics if n.type == "direct" and n.virtualport in ("802.1Qbg",
                                                                                            "802.1Qbh")]
        return (kinds[0], kinds.count(kinds[0])) if kinds else ("none", 1)


def parse_domain_xml(xml: str) -> DomainFacts:
    root = ET.fromstring(xml)
    memory = root.find("currentMemory")
    if memory is None:
        memory = root.find("memory")
    unit = (memory.get("unit") or "KiB").lower()
    nics = []
    for iface in root.findall("./devices/interface"):
        mac = iface.find("mac")
        source = iface.find("source")
        vport = iface.find("virtualport")
        params = iface.find("virtualport/parameters")
        vsi_type = None
        if params is not None and params.get("managerid") is not None:
            vsi_type = (int(params.get("managerid", "0")), int(params.get("typeid", "0")),
                        int(params.get("typeidversion", "0")))
        nics.append(Nic(type=iface.get("type", ""), mac=mac.get("address", "") if mac is not None else "",
                        source_dev=source.get("dev", "") if source is not None else "",
                        virtualport=vport.get("type", "") if vport is not None else "", vsi_type=vsi_type))
    vcpu = root.find("vcpu")
    return DomainFacts(name=root.findtext("name", ""), uuid=root.findtext("uuid", ""),
                       memory_mib=float(memory.text) * _UNIT_MIB[unit],
                       vcpus=int(vcpu.text) if vcpu is not None else 1, nics=tuple(nics))


def read_domain(dom: Any) -> DomainFacts:
    """The domain's facts and current migration settings, all through read-only calls."""
    import libvirt

    facts = parse_domain_xml(dom.XMLDesc(0))
    # older daemons lack these calls: the base scenario's values stand
    try:
        downtime = float(dom.migrateGetMaxDowntime(0))
    except libvirt.libvirtError:
        downtime = None
    try:
        raw_speed = float(dom.migrateGetMaxSpeed(0))
        speed = 0.0 if raw_speed >= UNLIMITED_SPEED_MIB_S else raw_speed
    except libvirt.libvirtError:
        speed = None
    return dataclasses.replace(facts, max_downtime_ms=downtime, max_speed_mib_s=speed)


@dataclass(frozen=True)
class DirtyRate:
    mib_s: float
    source: str  # how it was measured
    calc_s: float
    # each run of libvirt's calculation (none from job stats)
    runs_mib_s: tuple[float, ...] = ()
    # the sampling standard error of mib_s; 0 where the pages were counted, not sampled (job stats)
    stderr_mib_s: float = 0.0


def sampling_stderr_mib_s(rate_mib_s: float, calc_s: float, runs: int) -> float:
    """The standard error of the mean of `runs` page-sampling estimates of `calc_s` seconds each. The
    count of dirty samples in one run is binomial, its variance at most its mean (rate x period / 2 MiB
    samples), so this is an upper bound. For a 256 MiB guest at 19.5 MiB/s one 2 s run gives +-4.4
    MiB/s (+-23 %): the estimate, not the model, then dominates a predicted total."""
    return math.sqrt(max(0.0, rate_mib_s) * SAMPLED_MIB_PER_PAGE / (calc_s * runs))


def measure_dirty_rate(conn: Any, dom: Any, calc_s: float, runs: int = 1,
                       timeout_s: float = 30.0) -> DirtyRate:
    """The guest's dirty rate: from the migration job's stats when the domain is migrating already
    (waiting, read-only, for the job's first rate), else the mean of `runs` of libvirt's dirty-rate
    calculation (virDomainStartDirtyRateCalc + `dirtyrate` stats; each run samples pages afresh, so
    the sampling error falls as 1 / sqrt(runs))."""
    deadline = time.monotonic() + timeout_s
    job = JobInfo.from_stats(dom.jobStats())
    # a running job is never disturbed: no calculation is started beside it, its stats are only read
    while job.type == JOB_UNBOUNDED:
        if job.memory_iteration >= _JOB_RATE_FROM_ITERATION:
            page = job.memory_page_size_bytes or 4096
            return DirtyRate(pages_s_to_mib_s(job.memory_dirty_rate_pages_s, page),
                             "migration job stats (memory_dirty_rate)", 0.0)
        if time.monotonic() > deadline:
            raise ExecutorError(f"the migration job of {dom.name()} reported no dirty rate in "
                                f"{timeout_s:g} s")
        time.sleep(0.25)
        job = JobInfo.from_stats(dom.jobStats())
    seconds = max(1, round(calc_s))
    values = tuple(_calculate_once(conn, dom, seconds, timeout_s) for _ in range(max(1, runs)))
    mean = sum(values) / len(values)
    times = f"{len(values)} runs of {seconds} s" if len(values) > 1 else f"{seconds} s"
    return DirtyRate(mean, f"libvirt dirty-rate calculation over {times}", seconds, values,
                     sampling_stderr_mib_s(mean, seconds, len(values)))


def _calculate_once(conn: Any, dom: Any, seconds: int, timeout_s: float) -> float:
    import libvirt

    try:
        # page-sampling mode (flags 0). The dirty-bitmap mode would count exactly, but QEMU 7.2 under
        # TCG segfaults on it, killing the guest (seen on the testbed: qmp_calc_dirty_rate calls
        # kvm_dirty_ring_enabled(), which reads kvm_state, NULL without KVM)
        dom.startDirtyRateCalc(seconds, 0)
    except libvirt.libvirtError as exc:
        raise ExecutorError(f"dirty-rate calculation refused on {dom.name()}: {exc}") from None
    deadline = time.monotonic() + seconds + timeout_s
    while time.monotonic() < deadline:
        time.sleep(0.25)
        (_, stats), = conn.domainListGetStats([dom], libvirt.VIR_DOMAIN_STATS_DIRTYRATE)
        if stats.get("dirtyrate.calc_status") == _DIRTYRATE_MEASURED:
            return float(stats.get("dirtyrate.megabytes_per_second", 0))
    raise ExecutorError(f"dirty-rate calculation on {dom.name()} did not finish in {seconds + timeout_s:g} s")


# the migration settings a live domain carries, by the scenario field they fill, and the virsh
# command that reads each
DOMAIN_SETTINGS = {"max_downtime_ms": "migrate-getmaxdowntime", "bandwidth_mib_s": "migrate-getspeed"}


def migration_for(base: MigrationSpec, facts: DomainFacts,
                  stated: Mapping[str, str]) -> tuple[MigrationSpec, dict[str, str]]:
    """The migration the operator will run, and where each of its DOMAIN_SETTINGS came from: what the
    operator stated (`stated`: field -> where, its value already in `base`) wins, then the domain's
    current setting, then the base scenario's default."""
    current = {"max_downtime_ms": facts.max_downtime_ms or None, "bandwidth_mib_s": facts.max_speed_mib_s}
    changes, sources = {}, {}
    for name, virsh in DOMAIN_SETTINGS.items():
        if name in stated:
            sources[name] = stated[name]
        elif current[name] is not None:
            changes[name] = current[name]
            sources[name] = f"the domain's current setting (virsh {virsh})"
        else:
            sources[name] = "the default"
    return dataclasses.replace(base, **changes), sources


def scenario_for(base: Scenario, facts: DomainFacts, dirty: DirtyRate, *,
                 stated: Mapping[str, str] | None = None, switch_service_ms: float | None = None,
                 link_mbit_s: float | None = None) -> Scenario:
    """The base scenario with what the live domain says: its memory, vCPUs, ports, migration settings
    the operator did not state (migration_for) and measured dirty rate (as a constant model: one
    measurement cannot see a hot set), and what the probes measured: the switch's service time and the
    link's achievable TCP throughput (taken as line rate x efficiency 1.0, since the measurement
    already pays TCP's overheads)."""
    port_type, vnics = facts.port_profile
    migration, _sources = migration_for(base.migration, facts, stated or {})
    dirty_spec = dataclasses.replace(base.vm.dirty, model="constant", rate_mib_s=dirty.mib_s)
    vm = dataclasses.replace(base.vm, memory_mib=facts.memory_mib, vcpus=facts.vcpus, dirty=dirty_spec)
    switch = base.switch
    if switch_service_ms is not None:
        switch = dataclasses.replace(switch, service_time_ms=switch_service_ms)
    link = base.link
    if link_mbit_s is not None:
        link = dataclasses.replace(link, bandwidth_mbit_s=link_mbit_s, efficiency=1.0)
    return base.replace(name=facts.name, vm=vm, migration=migration, switch=switch, link=link,
                        port_profile=dataclasses.replace(base.port_profile, type=port_type, vnics=vnics))


@dataclass(frozen=True)
class SwitchProbe:
    """A test VSI's associate and disassociate, as libvirt would see them (observed: at its 125 ms polls)
    and on the wire (raw: until the switch's reply reached the port; None when not watched)."""

    port: str
    instance_uuid: str
    associate: PortResult
    disassociate: PortResult

    @property
    def service_time_ms(self) -> float:
        """The scenario's switch service time: the raw associate latency, nothing subtracted (it holds
        the wire and lldpad's own handling too, as the model's service time does); the polled latency
        where the wire was not watched (then an over-estimate by up to one poll)."""
        a = self.associate
        return a.raw_ms if a.raw_ms is not None else a.observed_ms


def qbg_nic(facts: DomainFacts) -> Nic:
    nic = next((n for n in facts.nics if n.virtualport == "802.1Qbg" and n.vsi_type is not None), None)
    if nic is None:
        raise LookupError(f"--probe-switch: domain {facts.name!r} has no NIC with an 802.1Qbg <virtualport>")
    return nic


def probe_vsi_mac(instance: uuid.UUID) -> str:
    """A locally administered unicast MAC of the test VSI's own, so it never shares the guest's filter."""
    return ":".join(f"{b:02x}" for b in (0x02, *instance.bytes[:5]))


def probe_switch_latency(client: LldpadClient, nic: Nic) -> SwitchProbe:
    """Times a test VSI's associate and disassociate on the NIC's port, with the NIC's VSI type and an
    instance UUID of its own; the test VSI is disassociated whatever happens to the associate."""
    assert nic.vsi_type is not None
    instance = uuid.uuid4()
    profile = VsiProfile(*nic.vsi_type, instance_uuid=instance)
    mac = probe_vsi_mac(instance)
    try:
        associate = client.request(nic.source_dev, mac, profile, PortRequest.ASSOCIATE)
    finally:
        disassociate = client.request(nic.source_dev, mac, profile, PortRequest.DISASSOCIATE)
    if not associate.ok:
        raise RuntimeError(f"--probe-switch: test associate on {nic.source_dev} failed: {associate.error}")
    if not disassociate.ok:
        raise RuntimeError(f"--probe-switch: test VSI {instance} may still be associated on "
                           f"{nic.source_dev}: {disassociate.error}")
    return SwitchProbe(nic.source_dev, str(instance), associate, disassociate)


@dataclass(frozen=True)
class LinkMeasurement:
    mbit_s: float
    payload_bytes: int
    seconds: float
    source: str


# the probe's two ends, run by path inside the hosts
_LINK_PROGRAMS = Path(__file__).resolve().parent / "files"
LINK_PROBE_PORT = 49917


def measure_link(tb: Any, seconds: float = 2.0) -> LinkMeasurement:
    """Achievable TCP payload throughput from the testbed's source host to its destination, over the
    testbed's own veth between the two namespaces (its private subnet; nothing leaves the machine).
    Timed by the receiver, first byte to last."""
    src, dst = tb.src, tb.dst
    out: dict[str, Any] = {}

    def receive() -> None:
        try:
            done = tb.run_in(dst.name, [sys.executable, str(_LINK_PROGRAMS / "link_receiver.py"),
                                        dst.address, str(LINK_PROBE_PORT), str(seconds + 10)],
                             timeout=seconds + 20)
            out.update(json.loads(done.stdout))
        except Exception as exc:  # reported by the caller as one line
            out["error"] = str(exc)

    receiver = threading.Thread(target=receive)
    receiver.start()
    try:
        tb.run_in(src.name, [sys.executable, str(_LINK_PROGRAMS / "link_sender.py"), dst.address,
                             str(LINK_PROBE_PORT), str(seconds)], timeout=seconds + 20)
    finally:
        receiver.join()
    if "error" in out or not out.get("s"):
        raise RuntimeError(f"--measure-link: the receiver on {dst.name} failed: {out.get('error', out)}")
    return LinkMeasurement(bytes_s_to_mbit_s(out["bytes"] / out["s"]), out["bytes"], out["s"],
                           f"TCP from {src.name} ({src.address}) to {dst.name} ({dst.address}) for "
                           f"{seconds:g} s")


def lldpad_client(src_uri: str, holder_pid: int | None) -> LldpadClient:
    """A client of the source host's lldpad: a testbed host's (its namespaces, found through the host's
    holder process) or this machine's, where libvirt's pid file lives; a remote one is out of reach."""
    from urllib.parse import urlsplit

    from ..vdp.station import LLDPAD_PID_FILE, read_lldpad_pid

    if holder_pid is not None:
        pid_file, netns = Path(f"/proc/{holder_pid}/root/run/lldpad.pid"), f"/proc/{holder_pid}/ns/net"
    elif urlsplit(src_uri).netloc:
        raise LookupError(f"--probe-switch needs the source's lldpad on this machine: {src_uri} is remote "
                          "(give a local URI such as qemu:///system, or --testbed)")
    else:
        pid_file, netns = LLDPAD_PID_FILE, None
    try:
        pid = read_lldpad_pid(pid_file)
    except (OSError, ValueError) as exc:
        raise LookupError(f"--probe-switch: cannot find lldpad ({exc})") from None
    # the wire watch (the raw latency) needs CAP_NET_RAW; without it only the polled latency is seen.
    # lldpad reports a de-associate done at once, before the switch answers: wait for that answer
    return LldpadClient(pid, netns, watch_wire=os.geteuid() == 0, raw_wait_s=2.0)
