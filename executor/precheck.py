"""The pre-check's view of a live domain: read-only facts, a measured dirty rate, and the scenario
they make. Nothing here changes the domain or the hosts: no migration parameter is set and no XML is
touched (libvirt's dirty-rate calculation only samples guest pages)."""

from __future__ import annotations

import dataclasses
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import Any

from ..models.scenario import Scenario
from ..models.units import mib_s_to_pages_s
from .migrate import ExecutorError

# libvirt reports "unlimited" migration speed as LLONG_MAX bytes/s in MiB/s
UNLIMITED_SPEED_MIB_S = (2**63 - 1) >> 20
_UNIT_MIB = {"b": 2**-20, "bytes": 2**-20, "k": 2**-10, "kib": 2**-10, "kb": 1e3 / 2**20, "m": 1.0,
             "mib": 1.0, "mb": 1e6 / 2**20, "g": 1024.0, "gib": 1024.0, "gb": 1e9 / 2**20,
             "t": 2.0**20, "tib": 2.0**20}
# VIR_DOMAIN_DIRTYRATE_MEASURED
_DIRTYRATE_MEASURED = 2


@dataclass(frozen=True)
class Nic:
    type: str
    mac: str
    source_dev: str
    virtualport: str  # "" | "802.1Qbg" | "802.1Qbh" | ...


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
        nics.append(Nic(type=iface.get("type", ""), mac=mac.get("address", "") if mac is not None else "",
                        source_dev=source.get("dev", "") if source is not None else "",
                        virtualport=vport.get("type", "") if vport is not None else ""))
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


def measure_dirty_rate(conn: Any, dom: Any, calc_s: float, timeout_s: float = 30.0) -> DirtyRate:
    """The guest's dirty rate: from the migration job's stats when the domain is migrating already,
    else from libvirt's dirty-rate calculation (virDomainStartDirtyRateCalc + `dirtyrate` stats)."""
    import libvirt

    job = dom.jobStats()
    if job.get("type") == libvirt.VIR_DOMAIN_JOB_UNBOUNDED and job.get("memory_dirty_rate"):
        page = job.get("memory_page_size", 4096)
        return DirtyRate(job["memory_dirty_rate"] * page / 2**20, "migration job stats (memory_dirty_rate)",
                         0.0)
    seconds = max(1, round(calc_s))
    try:
        dom.startDirtyRateCalc(seconds, 0)
    except libvirt.libvirtError as exc:
        raise ExecutorError(f"dirty-rate calculation refused on {dom.name()}: {exc}") from None
    deadline = time.monotonic() + seconds + timeout_s
    while time.monotonic() < deadline:
        time.sleep(0.25)
        (_, stats), = conn.domainListGetStats([dom], libvirt.VIR_DOMAIN_STATS_DIRTYRATE)
        if stats.get("dirtyrate.calc_status") == _DIRTYRATE_MEASURED:
            return DirtyRate(float(stats.get("dirtyrate.megabytes_per_second", 0)),
                             f"libvirt dirty-rate calculation over {seconds} s", seconds)
    raise ExecutorError(f"dirty-rate calculation on {dom.name()} did not finish in {seconds + timeout_s:g} s")


def scenario_for(base: Scenario, facts: DomainFacts, dirty: DirtyRate) -> Scenario:
    """The base scenario with what the live domain says: its memory, vCPUs, ports, current migration
    settings and measured dirty rate (as a constant model: one measurement cannot see a hot set)."""
    port_type, vnics = facts.port_profile
    migration = base.migration
    if facts.max_downtime_ms:
        migration = dataclasses.replace(migration, max_downtime_ms=facts.max_downtime_ms)
    if facts.max_speed_mib_s is not None:
        migration = dataclasses.replace(migration, bandwidth_mib_s=facts.max_speed_mib_s)
    dirty_spec = dataclasses.replace(base.vm.dirty, model="constant", rate_mib_s=dirty.mib_s)
    vm = dataclasses.replace(base.vm, memory_mib=facts.memory_mib, vcpus=facts.vcpus, dirty=dirty_spec)
    return base.replace(name=facts.name, vm=vm, migration=migration,
                        port_profile=dataclasses.replace(base.port_profile, type=port_type, vnics=vnics))


def dirty_pages_s(dirty: DirtyRate, page_size_bytes: int) -> float:
    return mib_s_to_pages_s(dirty.mib_s, page_size_bytes)
