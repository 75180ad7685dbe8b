"""The test guest as a libvirt domain: its dirtying parameters, its domain XML, and reading the progress
it reports on its serial port."""

from __future__ import annotations

import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

PAGE_BYTES = 4096
# 1.0 in the guest's 16.16 fixed point: the region's pages contiguous
STRIDE_ONE = 1 << 16


@dataclass(frozen=True)
class DirtySpec:
    """What the guest writes, in its own clock. Either a constant rate (one sweep over the whole
    region) or hot/cold (hot_mib > 0: the first hot_mib of the region swept over and over at
    hot_rate_pages, the rest at cold_rate_pages). The region's pages lie stride_fp / 65536 pages apart
    (zero pages between them); scatter=1 sweeps each part in a scrambled order; pm_timer=1 keeps the
    rate in the host's time when the vCPU is starved (dirtier.c)."""

    rate_pages: int = 0
    region_mib: int = 64
    hot_mib: int = 0
    hot_rate_pages: int = 0
    cold_rate_pages: int = 0
    region_start_mib: int = 2
    report_ms: int = 1000
    max_lag_ms: int = 50
    stride_fp: int = STRIDE_ONE
    scatter: int = 0
    # 1: pace by the ACPI PM timer (loses no time when the vCPU is starved) rather than by PIT ticks
    pm_timer: int = 0
    # 1: a wake-up earns at most one PIT period of writes, so time the vCPU could not run (throttled by
    # auto-converge, starved) is work lost, as for a CPU-bound workload; 0: it catches up to max_lag_ms
    work_paced: int = 0

    __test__ = False

    def __post_init__(self) -> None:
        for k, v in asdict(self).items():
            if not isinstance(v, int) or v < 0 or v >= 2**31:
                raise ValueError(f"DirtySpec.{k} must be a non-negative int, got {v!r}")
        if self.hot_mib > self.region_mib:
            raise ValueError("hot_mib larger than region_mib")
        if self.hot_mib and self.rate_pages:
            raise ValueError("give rate_pages (constant) or hot_mib with hot/cold rates, not both")
        if self.region_start_mib < 2:
            raise ValueError("region_start_mib must be >= 2 (the kernel sits at 1 MiB)")
        if self.stride_fp < STRIDE_ONE or not {self.scatter, self.pm_timer, self.work_paced} <= {0, 1}:
            raise ValueError("stride_fp must be >= 65536 (1.0), scatter, pm_timer and work_paced 0 or 1")

    @classmethod
    def constant(cls, rate_pages: int, region_mib: int, **kw: int) -> DirtySpec:
        return cls(rate_pages=rate_pages, region_mib=region_mib, **kw)

    @classmethod
    def hot_cold(cls, region_mib: int, hot_mib: int, hot_rate_pages: int, cold_rate_pages: int,
                 **kw: int) -> DirtySpec:
        return cls(region_mib=region_mib, hot_mib=hot_mib, hot_rate_pages=hot_rate_pages,
                   cold_rate_pages=cold_rate_pages, **kw)

    @property
    def write_rate_pages(self) -> int:
        """Page writes per second (not distinct pages: a hot set smaller than rate x period saturates)."""
        return self.hot_rate_pages + self.cold_rate_pages if self.hot_mib else self.rate_pages

    def span_mib(self) -> int:
        """The guest RAM the region's pages spread over."""
        pages = self.region_mib * (1 << 20) // PAGE_BYTES
        last = ((pages - 1) * self.stride_fp >> 16) if pages else -1
        return -(-(last + 1) * PAGE_BYTES // (1 << 20))

    def min_memory_mib(self) -> int:
        return self.region_start_mib + self.span_mib() + 1

    def cmdline(self) -> str:
        return " ".join(f"{k}={v}" for k, v in asdict(self).items())


def domain_xml(name: str, *, kernel: str | os.PathLike[str], dirty: DirtySpec, memory_mib: int = 256,
               vcpus: int = 1, virt_type: str = "qemu", serial_log: str | os.PathLike[str] | None = None,
               emulator: str = "/usr/bin/qemu-system-x86_64", machine: str = "pc") -> str:
    """Domain XML for the test guest: no disk, no NIC, no display; serial port appended to serial_log
    (append, so the destination QEMU keeps adding to the source's log after a migration)."""
    if virt_type not in ("kvm", "qemu"):
        raise ValueError("virt_type must be 'kvm' or 'qemu' (TCG)")
    if memory_mib < dirty.min_memory_mib():
        raise ValueError(f"{memory_mib} MiB is too small for the dirty region ({dirty.min_memory_mib()} MiB)")
    if not re.fullmatch(r"[A-Za-z0-9_.+-]{1,64}", name):
        raise ValueError(f"bad domain name {name!r}")
    serial = ("<serial type='null'><target port='0'/></serial>" if serial_log is None else
              f"<serial type='file'><source path={quoteattr(str(serial_log))} append='on'/>"
              "<target port='0'/></serial>")
    return f"""<domain type='{virt_type}'>
  <name>{name}</name>
  <memory unit='MiB'>{int(memory_mib)}</memory>
  <vcpu>{int(vcpus)}</vcpu>
  <os>
    <type arch='x86_64' machine='{escape(machine)}'>hvm</type>
    <kernel>{escape(str(kernel))}</kernel>
    <cmdline>{escape(dirty.cmdline())}</cmdline>
  </os>
  <features>
    <!-- the ACPI PM timer paces a guest with pm_timer=1; without <acpi/> QEMU has no PIIX4 PM device -->
    <acpi/>
  </features>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>destroy</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <emulator>{escape(emulator)}</emulator>
    {serial}
    <controller type='usb' model='none'/>
    <memballoon model='none'/>
  </devices>
</domain>
"""


@dataclass(frozen=True)
class Progress:
    """One report line of the guest: its clock (ms since the fill finished) and pages written so far."""

    ms: int
    pages: int
    hot: int
    cold: int


_LINE = re.compile(r"^pcd ms=(\d+) pages=(\d+) hot=(\d+) cold=(\d+)$")


def read_progress(serial_log: str | os.PathLike[str]) -> list[Progress]:
    """Parse the guest's complete report lines (a partly written last line is skipped)."""
    try:
        text = Path(serial_log).read_bytes().decode("ascii", "replace")
    except FileNotFoundError:
        return []
    out = []
    for line in text.split("\n")[:-1]:
        m = _LINE.match(line.strip())
        if m:
            out.append(Progress(*(int(g) for g in m.groups())))
    return out


def guest_started(serial_log: str | os.PathLike[str]) -> bool:
    """True once the guest has filled its region and started dirtying."""
    try:
        return b"pcd filled" in Path(serial_log).read_bytes()
    except FileNotFoundError:
        return False


def guest_faulted(serial_log: str | os.PathLike[str]) -> bool:
    try:
        return b"pcd fault" in Path(serial_log).read_bytes()
    except FileNotFoundError:
        return False


def achieved_rate(samples: list[Progress]) -> float:
    """Pages written per second of guest time between the first and last sample."""
    if len(samples) < 2 or samples[-1].ms <= samples[0].ms:
        return 0.0
    return (samples[-1].pages - samples[0].pages) * 1000.0 / (samples[-1].ms - samples[0].ms)


def host_rate(samples: list[tuple[float, Progress]]) -> float:
    """Pages written per second of host time, from (host time in s, latest Progress) pairs taken while
    watching the serial log. Unlike achieved_rate, this sees ticks the guest lost while its vCPU could
    not run (a starved or throttled vCPU, a paused VM), which is what QEMU's dirty rate also sees. Each
    Progress is up to report_ms old when read, so use a window much longer than report_ms."""
    if len(samples) < 2 or samples[-1][0] <= samples[0][0]:
        return 0.0
    return (samples[-1][1].pages - samples[0][1].pages) / (samples[-1][0] - samples[0][0])
