"""The result record: one flat row per migration, written by every engine (simulator, fast path,
real executor) so that predictions and measurements join on `scenario_id`."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from .phases import Phase

NAN = math.nan


@dataclass(frozen=True)
class MigrationRecord:
    scenario_id: str
    engine: str
    seed: int = 0
    scenario_name: str = ""
    # the pre-copy reached the switchover (or was forced over); False = it never would
    converged: bool = False
    # "" when the VM runs on the destination; otherwise why it stayed on the source
    failure: str = ""
    # "" | "pause" | "postcopy": how a timeout forced the switchover
    forced: str = ""
    # QEMU's dirty-sync-count = libvirt's memory_iteration
    iterations: int = 0
    total_time_s: float = NAN
    # live phase: first page sent -> source stop
    precopy_time_s: float = NAN
    # QEMU's downtime: source stop-and-copy, handshake included
    downtime_ms: float = 0.0
    # source stop -> destination start (libvirt's completed-job downtime)
    pause_window_ms: float = 0.0
    # source stop -> destination port forwarding
    network_outage_ms: float = 0.0
    # the Finish associate as the guest feels it (802.1Qbh: inside the pause; 802.1Qbg: after it)
    association_ms: float = 0.0
    bytes_sent: float = 0.0
    # the pause window's parts
    final_copy_ms: float = 0.0
    handshake_ms: float = 0.0
    finish_rpc_ms: float = 0.0
    finish_work_ms: float = 0.0
    association_wait_ms: float = 0.0
    resume_ms: float = 0.0
    # other port-profile work and the switch's queueing
    preassociation_ms: float = 0.0
    disassociation_ms: float = 0.0
    switch_wait_ms: float = 0.0
    setup_time_ms: float = 0.0
    dirty_rate_pages_s: float = 0.0
    begin_start_s: float = NAN
    begin_end_s: float = NAN
    prepare_start_s: float = NAN
    prepare_end_s: float = NAN
    perform_start_s: float = NAN
    perform_end_s: float = NAN
    finish_start_s: float = NAN
    finish_end_s: float = NAN
    confirm_start_s: float = NAN
    confirm_end_s: float = NAN
    # anything an engine measured beyond the common columns (kept out of the flat row)
    extra: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def to_row(self) -> dict[str, Any]:
        row = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "extra"}
        return row

    def phase_span(self, phase: Phase) -> tuple[float, float]:
        return getattr(self, f"{phase}_start_s"), getattr(self, f"{phase}_end_s")

    @property
    def migrated(self) -> bool:
        return self.failure == ""


COLUMNS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(MigrationRecord) if f.name != "extra")
# each column's numpy/pandas dtype, for tables of records built column by column
COLUMN_DTYPES: dict[str, str] = {
    f.name: {"bool": "bool", "int": "int64", "float": "float64", "str": "object"}[f.type]
    for f in dataclasses.fields(MigrationRecord) if f.name != "extra"}
REQUIRED_COLUMNS = ("scenario_id", "engine", "converged", "failure", "iterations", "total_time_s",
                    "precopy_time_s", "downtime_ms", "pause_window_ms", "network_outage_ms",
                    "association_ms", "bytes_sent",
                    *(f"{p}_{edge}_s" for p in Phase for edge in ("start", "end")))


def record_from_row(row: dict[str, Any]) -> MigrationRecord:
    known = {k: v for k, v in row.items() if k in COLUMNS}
    return MigrationRecord(**known)
