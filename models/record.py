"""The result record: one flat row per migration, written by every engine (simulator, fast path,
real executor) so that predictions and measurements join on `scenario_id`."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
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
    # libvirt's completed-job time_elapsed (virsh domjobinfo --completed "Time elapsed"): the source's
    # migration job from Begin until libvirt saw QEMU complete and the source's Confirm began, so it
    # leaves Confirm out (measured here: within 3 ms of Confirm's start); NaN when no Confirm came
    time_elapsed_ms: float = NAN
    dirty_rate_pages_s: float = 0.0
    # auto-converge (models/auto_converge.py): the highest CPU throttle QEMU set (libvirt's job stats
    # auto_converge_throttle), and how long the guest ran throttled, from the first throttle to its stop
    # (inf when it never stops)
    throttle_peak_pct: int = 0
    throttle_time_s: float = 0.0
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


@dataclass(frozen=True)
class Measured:
    """What a real run measured beyond the common columns (engine "executor"; executor/migration/
    measure.py says where each comes from). Times are seconds after the migration call, NaN when not
    seen. A record carries it as `extra`, this class's fields by name (`as_extra`), which is what
    record.json holds; code that reads it back takes it typed (`Measured.of`)."""

    mode: str = ""
    # "<source URI> -> <destination URI>"
    direction: str = ""
    # QEMU's STOP -> RESUME, a few ms under libvirt's pause window (another clock)
    pause_window_qemu_ms: float = NAN
    # the destination's "launch" -> "launch built" in Prepare: libvirt building QEMU's command line
    command_line_ms: float = NAN
    # libvirt's completed-job downtime_net ("Downtime w/o network")
    downtime_net_ms: float = NAN
    # where network_outage_ms came from: a watched switch port, or the pause window assumed
    outage_source: str = ""
    # the switch's view of the destination port (NaN: not watched)
    port_associate_request_s: float = NAN
    port_forwarding_s: float = NAN
    port_first_frame_s: float = NAN
    # 802.1Qbh: the poll at which libvirt read the fabric's answer to Finish's associate (the VIC's log)
    port_associate_seen_s: float = NAN
    memory_constant_pages: int = 0
    memory_normal_pages: int = 0
    stream_mib_s: float = NAN
    domain_memory_mib: float = NAN
    # {"source": {"libvirt": "9.0.0", "qemu": "7.2.0"}, "destination": {...}}
    versions: dict[str, dict[str, str]] = field(default_factory=dict)
    # QEMU's MIGRATION_PASS events on the source
    iteration_times_s: list[float] = field(default_factory=list)
    qemu_stop_s: float = NAN
    # QEMU's RESUME on the destination
    destination_start_s: float = NAN
    # QEMU's MIGRATION "active": the first page
    live_start_s: float = NAN
    # the watchdog's action and its time, libvirt's error, whether each daemon still answered, and
    # the source domain's state after the call (measure.py Observations has each one's meaning)
    watchdog: str = ""
    watchdog_s: float = NAN
    # the orchestrator whose monitor drove the run ("" none), its clock's time_scale, and what it did:
    # [seconds after the call, "downtime" | "abort" | "pause" | "postcopy", ms or 0]
    policy: str = ""
    policy_time_scale: float = 1.0
    policy_actions: list[list[Any]] = field(default_factory=list)
    error: str = ""
    error_code: int = 0
    error_domain: int = 0
    destination_reachable: bool | None = None
    source_reachable: bool | None = None
    source_state: str = ""
    port_fault: str = ""
    rtt_ms: float = NAN
    # the README's log_filters the daemons' logs lack, and where the phases came from
    missing_log_filters: list[str] = field(default_factory=list)
    phases_from: str = ""
    # a stuck VSI the testbed recovered from before running again ("" when none)
    recovered: str = ""

    def as_extra(self) -> dict[str, Any]:
        """The record's `extra`: every field, by name ("recovered" only when there was something)."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        if not self.recovered:
            del out["recovered"]
        return out

    @classmethod
    def of(cls, record: MigrationRecord) -> Measured:
        """A measured record's observations, typed; a prediction's (no `extra`) are all unknown."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in record.extra.items() if k in names})


# a float tolerance on the pause window's order: the windows are sums of the same parts in other orders
_TOLERANCE_MS = 1e-6


def contradictions(row: Mapping[str, Any]) -> list[str]:
    """What a record (a row of one: a record's `to_row`, a Parquet row, its JSON) says against itself;
    [] when nothing. Null (strict JSON's non-finite) reads as NaN."""

    def number(column: str) -> float:
        value = row.get(column)
        return math.nan if value is None else float(value)

    found = []
    if row.get("converged") and not math.isfinite(number("total_time_s")):
        found.append(f"converged but total_time_s = {row.get('total_time_s')!r}")
    pause, downtime, final = number("pause_window_ms"), number("downtime_ms"), number("final_copy_ms")
    if not pause >= downtime - _TOLERANCE_MS * max(1.0, abs(downtime)):
        found.append(f"pause_window_ms = {pause!r} < downtime_ms = {downtime!r}")
    if not downtime >= final - _TOLERANCE_MS * max(1.0, abs(final)):
        found.append(f"downtime_ms = {downtime!r} < final_copy_ms = {final!r}")
    if not math.isfinite(number("bytes_sent")):
        found.append(f"bytes_sent = {row.get('bytes_sent')!r}")
    return found


def record_from_row(row: dict[str, Any]) -> MigrationRecord:
    known = {k: v for k, v in row.items() if k in COLUMNS}
    return MigrationRecord(**known)
