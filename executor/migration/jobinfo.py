"""libvirt's job statistics as a typed record, at the libvirt boundary.

`virDomainGetJobStats` returns a dict whose keys depend on the job's type, the hypervisor and the
libvirt version (include/libvirt/libvirt-domain.h, VIR_DOMAIN_JOB_*). Like Nova's `JobInfo`
(nova/virt/libvirt/guest.py), the record tolerates missing keys (0 when absent) and keeps the raw dict,
so nothing libvirt said is lost and nothing downstream reads raw key names.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# include/libvirt/libvirt-domain.h: virDomainJobType
JOB_NONE, JOB_BOUNDED, JOB_UNBOUNDED, JOB_COMPLETED, JOB_FAILED, JOB_CANCELLED = range(6)
_TYPE_NAMES = ("none", "bounded", "unbounded", "completed", "failed", "cancelled")


@dataclass(frozen=True)
class JobInfo:
    type: int = JOB_NONE
    time_elapsed_ms: int = 0
    time_elapsed_net_ms: int = 0
    # libvirt's completed-job downtime: source stop -> destination start (the pause window)
    downtime_ms: int = 0
    downtime_net_ms: int = 0
    # QEMU's setup phase, before the first page is sent
    setup_time_ms: int = 0
    memory_total_bytes: int = 0
    memory_processed_bytes: int = 0
    memory_remaining_bytes: int = 0
    memory_bytes_s: int = 0
    # zero pages (QEMU "duplicate"): sent as a header
    memory_constant_pages: int = 0
    memory_normal_pages: int = 0
    memory_normal_bytes: int = 0
    memory_dirty_rate_pages_s: int = 0
    memory_page_size_bytes: int = 0
    # QEMU's dirty-sync-count
    memory_iteration: int = 0
    auto_converge_throttle_pct: int = 0
    data_total_bytes: int = 0
    data_remaining_bytes: int = 0
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def from_stats(cls, stats: dict[str, Any] | None) -> JobInfo:
        stats = dict(stats or {})
        values = {name: int(stats.get(key, 0) or 0) for name, key in _KEYS.items()}
        return cls(**values, raw=stats)

    @property
    def type_name(self) -> str:
        return _TYPE_NAMES[self.type] if 0 <= self.type < len(_TYPE_NAMES) else str(self.type)

    @property
    def active(self) -> bool:
        return self.type in (JOB_BOUNDED, JOB_UNBOUNDED)

    def progress_pct(self) -> float:
        """virsh migrate --verbose: 100 - remaining x 100 / total, on data (memory + disks)."""
        total = self.data_total_bytes or self.memory_total_bytes
        remaining = self.data_remaining_bytes if self.data_total_bytes else self.memory_remaining_bytes
        return 0.0 if total <= 0 else 100.0 - remaining * 100.0 / total


_KEYS = {
    "type": "type",
    "time_elapsed_ms": "time_elapsed",
    "time_elapsed_net_ms": "time_elapsed_net",
    "downtime_ms": "downtime",
    "downtime_net_ms": "downtime_net",
    "setup_time_ms": "setup_time",
    "memory_total_bytes": "memory_total",
    "memory_processed_bytes": "memory_processed",
    "memory_remaining_bytes": "memory_remaining",
    "memory_bytes_s": "memory_bps",
    "memory_constant_pages": "memory_constant",
    "memory_normal_pages": "memory_normal",
    "memory_normal_bytes": "memory_normal_bytes",
    "memory_dirty_rate_pages_s": "memory_dirty_rate",
    "memory_page_size_bytes": "memory_page_size",
    "memory_iteration": "memory_iteration",
    "auto_converge_throttle_pct": "auto_converge_throttle",
    "data_total_bytes": "data_total",
    "data_remaining_bytes": "data_remaining",
}
