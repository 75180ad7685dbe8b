"""The fast path: many single-VM migrations at once, as numpy arrays.

Where it is exact — a constant or hot/cold dirty model (pattern random), no port profile (so no
switch), no timeout, no auto-converge — a migration is a fixed sequence of waits around the pre-copy
loop. The loop runs `models.switchover`'s own functions compiled by numba, one migration at a time
(sim/compiled.py), to the same bits as the SimPy engine on Python floats; the waits around it are the engine's
(sim/engine.py), added as arrays in the engine's order so that each time is the same float. The SimPy
engine stays the reference: the sweep runner sends every other scenario there, and
tests/test_fast_path.py holds the two together.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..models import switchover as rule
from ..models import timeline
from ..models.dirty import ConstantDirty, HotColdDirty
from ..models.fieldpaths import get_value
from ..models.phases import network_outage_s
from ..models.record import COLUMN_DTYPES, COLUMNS, MigrationRecord
from ..models.scenario import Scenario
from ..models.stream import stream_rates
from ..models.units import (
    mib_s_to_pages_s,
    mib_to_bytes,
    mib_to_pages,
    ms_to_s,
    s_to_ms,
)

ENGINE = "fast"
# the scenario fields a fast-path migration depends on, and those that decide whether it may run here
FIELDS = ("vm.memory_mib", "vm.page_size_bytes", "vm.zero_page_fraction", "vm.zero_page_layout",
          "vm.device_state_mib",
          "vm.dirty.model", "vm.dirty.rate_mib_s", "vm.dirty.hot_set_mib", "vm.dirty.hot_rate_mib_s",
          "vm.dirty.cold_rate_mib_s", "vm.dirty.pattern", "link.bandwidth_mbit_s", "link.efficiency",
          "link.rtt_ms", "link.socket_backlog_mib", "link.sender_mib_s", "link.final_copy_efficiency",
          "link.final_copy_sender_mib_s",
          "migration.max_downtime_ms", "migration.bandwidth_mib_s", "migration.switchover_rule",
          "migration.timeout_s", "migration.auto_converge", "port_profile.type", "overheads.begin_ms",
          "overheads.prepare_ms",
          "overheads.setup_ms", "overheads.handshake_ms", "overheads.finish_ms", "overheads.resume_ms",
          "overheads.confirm_ms", "overheads.announce_ms", "policy.orchestrator")
# the record's columns that identify a run rather than describe it: the caller fills them
IDENTITY = ("scenario_id", "engine", "seed", "scenario_name")
# what a migration that never converges does not reach: 0 in its record (engine.MigrationRun.record)
_NOT_REACHED = ("downtime_ms", "final_copy_ms", "handshake_ms", "finish_rpc_ms", "finish_work_ms",
                "association_wait_ms", "resume_ms", "disassociation_ms", "pause_window_ms",
                "network_outage_ms", "dirty_rate_pages_s")


def available() -> bool:
    """Whether numba, which compiles the pre-copy loop (sim/compiled.py), imports here: it is the
    `fast` extra, not a base dependency."""
    try:
        importlib.import_module("numba")
    except ImportError:
        return False
    return True


def eligible(columns: Mapping[str, Any]) -> np.ndarray:
    """Which migrations the fast path computes exactly (arrays or scalars by field path)."""
    return np.asarray(np.isin(columns["vm.dirty.model"], ("constant", "hotcold"))
                      # a sweep's syncs go to the SimPy engine, the reference
                      & (np.asarray(columns["vm.dirty.pattern"]) == "random")
                      & (np.asarray(columns["port_profile.type"]) == "none")
                      & (np.asarray(columns["migration.timeout_s"]) == 0)
                      # the throttle changes the dirty rate at syncs: the SimPy engine's
                      & ~np.asarray(columns["migration.auto_converge"], dtype=bool)
                      # an orchestrator's monitor acts mid-migration: the SimPy engine's (sim/policy.py)
                      & (np.asarray(columns["policy.orchestrator"]) == "none"))


def inputs(base: Scenario, columns: Mapping[str, np.ndarray]) -> dict[str, Any]:
    """The fast path's fields: swept ones from `columns`, the rest from the base scenario."""
    return {f: columns[f] if f in columns else get_value(base, f) for f in FIELDS}


def evaluate(columns: Mapping[str, Any], n: int) -> dict[str, np.ndarray]:
    """Record columns (all but IDENTITY) for `n` eligible migrations given by field path."""
    if not np.all(np.broadcast_to(eligible(columns), (n,))):
        raise ValueError("the fast path is exact only for constant or hotcold dirty models (pattern "
                         "random), no port profile, no timeout and no auto-converge")
    # a field the migrations share stays one Python number: the same arithmetic, done once
    c = {f: _shared_or_column(columns[f], n) for f in FIELDS}
    out = _empty_columns(n)
    for model in ("constant", "hotcold"):
        for rule_name in ("qemu", "pass-end"):
            in_group = np.broadcast_to((c["vm.dirty.model"] == model)
                                       & (c["migration.switchover_rule"] == rule_name), (n,))
            everyone = bool(in_group.all())
            rows = slice(None) if everyone else np.flatnonzero(in_group)
            size = n if everyone else len(rows)
            if size:
                picked = {f: v if everyone or v.__class__ is not np.ndarray else v[rows]
                          for f, v in c.items()}
                _Migrations(picked, size, model, rule_name).write(out, rows)
    return out


def _empty_columns(n: int) -> dict[str, np.ndarray]:
    """Record columns to fill, all but IDENTITY. Those of one type are rows of one block: fresh memory
    costs more here than the arithmetic, and a large block comes in huge pages."""
    names = [name for name in COLUMNS if name not in IDENTITY]
    typed = {dtype: [name for name in names if COLUMN_DTYPES[name] == dtype]
             for dtype in {COLUMN_DTYPES[name] for name in names}}
    rows = {name: row for dtype, group in typed.items()
            for name, row in zip(group, np.empty((len(group), n), dtype=dtype), strict=True)}
    return {name: rows[name] for name in names}


def _shared_or_column(values: Any, n: int) -> Any:
    """A 0-d input as its Python number or string; a column as n float64s (or strings)."""
    values = np.asarray(values)
    if values.ndim == 0:
        return values.item()
    values = np.broadcast_to(values, (n,))
    return values.astype(np.float64, copy=False) if values.dtype.kind in "iuf" else values


def predict_many(scenarios: Sequence[Scenario], seed: int = 0) -> list[MigrationRecord]:
    """The fast path's records for eligible scenarios (ValueError for any other)."""
    columns = {f: np.array([get_value(s, f) for s in scenarios]) for f in FIELDS}
    out = evaluate(columns, len(scenarios))
    names = list(out)
    rows = [dict(zip(names, values, strict=True))
            for values in zip(*(out[name].tolist() for name in names), strict=True)]
    return [MigrationRecord(scenario_id=s.scenario_id, engine=ENGINE, seed=seed, scenario_name=s.name, **row)
            for s, row in zip(scenarios, rows, strict=True)]


class _Migrations:
    """One group of `n` migrations sharing a dirty model and a switchover rule: each field an array
    of theirs, or one number they all share."""

    def __init__(self, c: dict[str, Any], n: int, model: str, rule_name: str) -> None:
        self.c = c
        self.n = n
        self.rule_name = rule_name
        page = c["vm.page_size_bytes"]
        pages = mib_to_pages(c["vm.memory_mib"], page)
        # dirty.written_pages and engine._perform's zero pages
        self.written = pages * (1.0 - c["vm.zero_page_fraction"])
        self.zero = pages * c["vm.zero_page_fraction"]
        # dirty.dirty_model_for
        if model == "constant":
            self.dirty = ConstantDirty(mib_s_to_pages_s(c["vm.dirty.rate_mib_s"], page), self.written)
        else:
            self.dirty = HotColdDirty(mib_to_pages(c["vm.dirty.hot_set_mib"], page),
                                      mib_s_to_pages_s(c["vm.dirty.hot_rate_mib_s"], page),
                                      mib_s_to_pages_s(c["vm.dirty.cold_rate_mib_s"], page), self.written)
        # engine.LinkRates.for_scenario
        r = stream_rates(c["link.bandwidth_mbit_s"], c["link.efficiency"], c["link.sender_mib_s"],
                         c["migration.bandwidth_mib_s"], c["link.final_copy_efficiency"],
                         c["link.final_copy_sender_mib_s"])
        self.live_rate, self.final_rate, self.cap_bound = r.live_bytes_s, r.final_bytes_s, r.cap_bound
        self.queue_empty = np.logical_not(r.link_bound)

    def write(self, out: dict[str, np.ndarray], rows: slice | np.ndarray) -> None:
        """Writes the migrations' record columns into `out` at `rows`. Each array goes there as soon as it
        is known rather than into a dict of them all: a temporary freed at once is memory used again."""
        c, oh = self.c, self._overheads()
        half_rtt = ms_to_s(c["link.rtt_ms"]) / 2
        # engine.MigrationRun.run: each wait is `now + delay`, from t = 0
        opened = timeline.opening(oh, half_rtt)
        begin_end, prepare_end, live_start = opened.begin_end_s, opened.prepare_end_s, opened.live_start_s
        setup_s = timeline.after(0.0, timeline.layout(oh, half_rtt).setup)
        reached, stop_at, converged = self._precopy(live_start)
        precopy_s = stop_at - live_start
        for name, values in {
                "converged": converged, "failure": "", "forced": "", "setup_time_ms": s_to_ms(setup_s),
                "begin_start_s": 0.0, "begin_end_s": begin_end, "prepare_start_s": begin_end,
                "prepare_end_s": prepare_end, "perform_start_s": prepare_end, "preassociation_ms": 0.0,
                "association_ms": 0.0, "switch_wait_ms": 0.0, "iterations": reached.syncs + 1,
                "precopy_time_s": precopy_s, "handshake_ms": s_to_ms(oh.handshake_s),
                "finish_rpc_ms": s_to_ms(half_rtt), "finish_work_ms": c["overheads.finish_ms"],
                "association_wait_ms": 0.0, "resume_ms": c["overheads.resume_ms"], "disassociation_ms": 0.0,
                "throttle_peak_pct": 0, "throttle_time_s": 0.0,
                "dirty_rate_pages_s": np.where(precopy_s > 0, self.dirty.distinct_pages(0.0, precopy_s)
                                               / np.where(precopy_s > 0, precopy_s, 1.0), 0.0)}.items():
            out[name][rows] = values
        # the stop-and-copy, Finish and Confirm, for the migrations that switched over
        final_wire = reached.wire_bytes_pending + mib_to_bytes(c["vm.device_state_mib"])
        out["bytes_sent"][rows] = reached.bytes_sent + final_wire
        final_s = rule.final_copy_s(final_wire, self.final_rate, self.queue_empty,
                                    mib_to_bytes(c["link.socket_backlog_mib"]))
        out["final_copy_ms"][rows] = s_to_ms(final_s)
        # a stalled migration's later columns are overwritten below: only its Perform end is kept
        closed = timeline.closing(oh, half_rtt, stop_at, final_s)
        perform_end = np.where(converged, closed.perform_end_s, stop_at)
        out["downtime_ms"][rows] = s_to_ms(perform_end - stop_at)
        out["perform_end_s"][rows] = out["finish_start_s"][rows] = perform_end
        resumed = closed.destination_start_s
        out["pause_window_ms"][rows] = s_to_ms(resumed - stop_at)
        out["network_outage_ms"][rows] = s_to_ms(network_outage_s(stop_at, resumed, resumed, oh.announce_s))
        out["finish_end_s"][rows] = out["confirm_start_s"][rows] = resumed
        # engine.MigrationRun.record: from Begin (t = 0) to Confirm's start
        out["time_elapsed_ms"][rows] = s_to_ms(resumed - 0.0)
        out["total_time_s"][rows] = out["confirm_end_s"][rows] = closed.confirm_end_s
        stalled = ~converged
        if stalled.any():
            at = np.flatnonzero(stalled) if isinstance(rows, slice) else rows[stalled]
            # engine.MigrationRun.record for a migration that never converges
            for name, values in {
                    "failure": "not-converged", "iterations": reached.syncs[stalled],
                    "bytes_sent": reached.bytes_sent[stalled], "total_time_s": math.inf,
                    "precopy_time_s": math.inf, "finish_start_s": math.nan, "finish_end_s": math.nan,
                    "confirm_start_s": math.nan, "confirm_end_s": math.nan, "time_elapsed_ms": math.nan,
                    **dict.fromkeys(_NOT_REACHED, 0.0)}.items():
                out[name][at] = values

    def _overheads(self) -> timeline.Overheads:
        return timeline.Overheads.from_ms({k[len("overheads."):]: v for k, v in self.c.items()
                                           if k.startswith("overheads.")})

    def _precopy(self, live_start: Any) -> tuple[rule.PrecopyState, np.ndarray, np.ndarray]:
        """engine.MigrationRun._perform's loop for every migration: the final states (one state of
        arrays), the times then, and which switched over (the others stalled)."""
        # numba takes a while to import: only the fast path needs it
        from . import compiled

        c = self.c
        rate = self.live_rate
        start = rule.start_precopy(c["vm.page_size_bytes"], self.written, self.zero,
                                   c["vm.zero_page_layout"])
        return compiled.precopy(start, self.dirty, self.rule_name, rate,
                                rule.threshold_bytes(rate, ms_to_s(c["migration.max_downtime_ms"])),
                                rule.check_interval_s(self.cap_bound), live_start, self.n)
