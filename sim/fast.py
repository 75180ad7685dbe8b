"""The fast path: many single-VM migrations at once, as numpy arrays.

Where it is exact — a constant or hot/cold dirty model (pattern random), no port profile (so no
switch), no timeout — a migration is a fixed sequence of waits around the pre-copy loop, and the loop is
`models.switchover`'s own functions applied to whole arrays. Every migration in the loop syncs on the
same turn, so the loop runs as often as its slowest migration needs; a migration leaves it when it
switches over or stalls. The waits around it are the SimPy engine's (sim/engine.py), added in the
engine's order so that each time is the same float. The SimPy engine stays the reference: the sweep
runner sends every other scenario there, and tests/test_fast_path.py holds the two together.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..models import switchover as rule
from ..models.dirty import ConstantDirty, HotColdDirty
from ..models.fieldpaths import get_value
from ..models.phases import network_outage_s
from ..models.record import COLUMN_DTYPES, COLUMNS, MigrationRecord
from ..models.scenario import Scenario
from ..models.units import (
    mbit_s_to_bytes_s,
    mib_s_to_bytes_s,
    mib_s_to_pages_s,
    mib_to_bytes,
    mib_to_pages,
    ms_to_s,
    s_to_ms,
)

ENGINE = "fast"
# the scenario fields a fast-path migration depends on, and those that decide whether it may run here
FIELDS = ("vm.memory_mib", "vm.page_size_bytes", "vm.zero_page_fraction", "vm.device_state_mib",
          "vm.dirty.model", "vm.dirty.rate_mib_s", "vm.dirty.hot_set_mib", "vm.dirty.hot_rate_mib_s",
          "vm.dirty.cold_rate_mib_s", "vm.dirty.pattern", "link.bandwidth_mbit_s", "link.efficiency",
          "link.rtt_ms",
          "migration.max_downtime_ms", "migration.bandwidth_mib_s", "migration.switchover_rule",
          "migration.timeout_s", "port_profile.type", "overheads.begin_ms", "overheads.prepare_ms",
          "overheads.setup_ms", "overheads.handshake_ms", "overheads.finish_ms", "overheads.resume_ms",
          "overheads.confirm_ms", "overheads.announce_ms")
# the record's columns that identify a run rather than describe it: the caller fills them
IDENTITY = ("scenario_id", "engine", "seed", "scenario_name")


def eligible(columns: Mapping[str, Any]) -> np.ndarray:
    """Which migrations the fast path computes exactly (arrays or scalars by field path)."""
    return np.asarray(np.isin(columns["vm.dirty.model"], ("constant", "hotcold"))
                      # a sweep's syncs go to the SimPy engine, the reference
                      & (np.asarray(columns["vm.dirty.pattern"]) == "random")
                      & (np.asarray(columns["port_profile.type"]) == "none")
                      & (np.asarray(columns["migration.timeout_s"]) == 0))


def inputs(base: Scenario, columns: Mapping[str, np.ndarray]) -> dict[str, Any]:
    """The fast path's fields: swept ones from `columns`, the rest from the base scenario."""
    return {f: columns[f] if f in columns else get_value(base, f) for f in FIELDS}


def evaluate(columns: Mapping[str, Any], n: int) -> dict[str, np.ndarray]:
    """Record columns (all but IDENTITY) for `n` eligible migrations given by field path."""
    if not np.all(np.broadcast_to(eligible(columns), (n,))):
        raise ValueError("the fast path is exact only for constant or hotcold dirty models (pattern "
                         "random), no port profile and no timeout")
    # a field the migrations share stays one Python number: the same arithmetic, done once
    c = {f: _shared_or_column(columns[f], n) for f in FIELDS}
    out = {name: np.empty(n, dtype=COLUMN_DTYPES[name]) for name in COLUMNS if name not in IDENTITY}
    for model in ("constant", "hotcold"):
        for rule_name in ("qemu", "pass-end"):
            in_group = np.broadcast_to((c["vm.dirty.model"] == model)
                                       & (c["migration.switchover_rule"] == rule_name), (n,))
            everyone = bool(in_group.all())
            idx = slice(None) if everyone else np.flatnonzero(in_group)
            size = n if everyone else len(idx)
            if size:
                picked = {f: v if everyone or v.__class__ is not np.ndarray else v[idx] for f, v in c.items()}
                for name, values in _Migrations(picked, size, model, rule_name).columns().items():
                    if everyone and _own_column(values, out[name], out):
                        out[name] = values
                    else:
                        out[name][idx] = values
    return out


def _own_column(values: Any, empty: np.ndarray, out: dict[str, np.ndarray]) -> bool:
    """Can `values` be a whole column as it is: an array of the column's shape and type of its own (not
    a view of an input), and no other column's?"""
    return (values.__class__ is np.ndarray and values.shape == empty.shape and values.dtype == empty.dtype
            and values.flags.owndata and not any(values is other for other in out.values()))


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
        line = mbit_s_to_bytes_s(c["link.bandwidth_mbit_s"]) * c["link.efficiency"]
        cap_mib_s = c["migration.bandwidth_mib_s"]
        cap = np.where(cap_mib_s > 0, mib_s_to_bytes_s(cap_mib_s), math.inf)
        self.live_rate = np.minimum(line, cap)
        self.final_rate = line
        self.cap_bound = cap < line

    def columns(self) -> dict[str, np.ndarray]:
        c, oh = self.c, self._overheads()
        n = self.n
        half_rtt = ms_to_s(c["link.rtt_ms"]) / 2
        # engine.MigrationRun.run: each wait is `now + delay`, from t = 0
        begin_end = 0.0 + oh["begin"]
        prepare_end = (begin_end + (half_rtt + oh["prepare"])) + half_rtt
        setup_s = oh["setup"] + 2 * half_rtt
        live_start = prepare_end + setup_s
        reached = self._precopy(live_start)
        stop_at, syncs, converged = reached.stop_at, reached.syncs, reached.converged
        out: dict[str, np.ndarray] = {
            "converged": converged, "failure": np.where(converged, "", "not-converged").astype(object),
            "forced": np.full(n, "", dtype=object), "setup_time_ms": s_to_ms(setup_s),
            "begin_start_s": np.zeros(n), "begin_end_s": begin_end, "prepare_start_s": begin_end,
            "prepare_end_s": prepare_end, "perform_start_s": prepare_end, "preassociation_ms": np.zeros(n),
            "association_ms": np.zeros(n), "switch_wait_ms": np.zeros(n)}
        # the stop-and-copy, Finish and Confirm, for the migrations that switched over
        final_wire = reached.pending_wire + mib_to_bytes(c["vm.device_state_mib"])
        final_s = final_wire / self.final_rate
        perform_end = np.where(converged, stop_at + (oh["handshake"] + final_s), stop_at)
        resumed = ((perform_end + half_rtt) + oh["finish"]) + oh["resume"]
        confirm_end = (resumed + half_rtt) + oh["confirm"]
        precopy_s = stop_at - live_start
        zero = np.zeros(n)
        done = {
            "iterations": syncs + 1, "bytes_sent": reached.bytes_sent + final_wire,
            "total_time_s": confirm_end, "precopy_time_s": precopy_s,
            "downtime_ms": s_to_ms(perform_end - stop_at), "final_copy_ms": s_to_ms(final_s),
            "handshake_ms": s_to_ms(oh["handshake"]), "finish_rpc_ms": s_to_ms(half_rtt),
            "finish_work_ms": c["overheads.finish_ms"], "association_wait_ms": zero,
            "resume_ms": c["overheads.resume_ms"], "disassociation_ms": zero,
            "pause_window_ms": s_to_ms(resumed - stop_at),
            "network_outage_ms": s_to_ms(network_outage_s(stop_at, resumed, resumed, oh["announce"])),
            "dirty_rate_pages_s": np.where(precopy_s > 0, self.dirty.distinct_pages(0.0, precopy_s)
                                           / np.where(precopy_s > 0, precopy_s, 1.0), 0.0),
            "perform_end_s": perform_end, "finish_start_s": perform_end, "finish_end_s": resumed,
            "confirm_start_s": resumed, "confirm_end_s": confirm_end}
        # engine.MigrationRun.record for a migration that never converges
        stalled = {"iterations": syncs, "bytes_sent": reached.bytes_sent, "total_time_s": math.inf,
                   "precopy_time_s": math.inf, "perform_end_s": perform_end, "finish_start_s": math.nan,
                   "finish_end_s": math.nan, "confirm_start_s": math.nan, "confirm_end_s": math.nan}
        everyone = converged.all()
        for name, values in done.items():
            out[name] = values if everyone else np.where(converged, values, stalled.get(name, 0.0))
        return out

    def _overheads(self) -> dict[str, np.ndarray]:
        return {name: ms_to_s(self.c[f"overheads.{name}_ms"])
                for name in ("begin", "prepare", "setup", "handshake", "finish", "resume", "confirm",
                             "announce")}

    def _precopy(self, live_start: Any) -> _Outcome:
        """engine.MigrationRun._perform's loop, for every migration at once."""
        c = self.c
        rate = self.live_rate
        n = self.n
        # each migration's own pending set, even where all start alike
        start = rule.start_precopy(c["vm.page_size_bytes"], np.broadcast_to(self.written, (n,)),
                                   np.broadcast_to(self.zero, (n,)))
        loop = _Loop(start, self.dirty, {
            "rate": rate, "threshold": rule.threshold_bytes(rate, ms_to_s(c["migration.max_downtime_ms"])),
            "interval": rule.check_interval_s(self.cap_bound), "now": np.broadcast_to(live_start, (n,))})
        while not loop.leave(rule.below_threshold(loop.state, loop.arrays["threshold"]), switched=True):
            if loop.count <= ONE_BY_ONE:
                loop.finish_one_by_one(self.rule_name)
                break
            if loop.leave(_turn(loop.state, loop.dirty, loop.arrays, self.rule_name), switched=False):
                break
        return loop.outcome


# Near the convergence boundary a few migrations need thousands of syncs. A numpy call on a handful of
# elements costs more than the same operation on Python floats, so the last few finish one by one.
ONE_BY_ONE = 16
# Leavers stay in the arrays (their further turns are ignored) until fewer than this fraction of the
# rows is left: narrowing every array costs about as much as a turn, so it pays only now and then.
KEEP_FRACTION = 0.7
# when fewer than FEW_FRACTION of a loop at least WIDE rows wide leave, what they reached is computed
# for them alone rather than for every row
WIDE = 4096
FEW_FRACTION = 0.125


def _turn(state: rule.PrecopyState, dirty: Any, a: dict[str, Any], rule_name: str) -> Any:
    """The engine's loop body: send until the rule's next sync, sync, then the stall test."""
    step = rule.time_to_next_sync(state, rule_name, a["rate"], a["threshold"], a["interval"])
    a["now"] = a["now"] + step
    rule.send(state, step, a["rate"])
    rule.sync(state, dirty)
    return rule.stalled(state, a["threshold"], dirty.stationary_after_s)


@dataclasses.dataclass
class _Outcome:
    """Per migration: when it stopped the guest (or stalled), its syncs so far, bytes sent, wire bytes
    still pending, and whether it switched over."""

    stop_at: np.ndarray
    syncs: np.ndarray
    bytes_sent: np.ndarray
    pending_wire: np.ndarray
    converged: np.ndarray

    def set(self, at: Any, stop_at: Any, syncs: int, bytes_sent: Any, pending_wire: Any,
            switched: bool) -> None:
        self.stop_at[at], self.syncs[at], self.converged[at] = stop_at, syncs, switched
        self.bytes_sent[at], self.pending_wire[at] = bytes_sent, pending_wire


class _Loop:
    """The migrations still in the pre-copy loop: their state, dirty model and per-migration arrays
    (`now` among them; a shared number stays one), narrowed now and then as migrations leave; what the
    leavers reached goes to `outcome`."""

    def __init__(self, state: rule.PrecopyState, dirty: Any, arrays: dict[str, Any]) -> None:
        n = len(arrays["now"])
        self.state, self.dirty, self.arrays = state, dirty, arrays
        # each row's migration, and whether it is still in the loop
        self.alive = np.arange(n)
        self.in_loop = np.ones(n, dtype=bool)
        self.count = n
        self.outcome = _Outcome(np.empty(n), np.empty(n, dtype=np.int64), np.empty(n), np.empty(n),
                                np.zeros(n, dtype=bool))

    def leave(self, leaving: np.ndarray, switched: bool) -> bool:
        """Takes the `leaving` migrations out. True when none is left."""
        leaving = leaving & self.in_loop
        if not leaving.any():
            return False
        rows = np.flatnonzero(leaving)
        # a few leaving many: their pending wire bytes alone; else everyone's, then theirs
        few = len(leaving) > WIDE and len(rows) < len(leaving) * FEW_FRACTION
        left = _subset(self.state, rows) if few else self.state
        # before the first send, bytes_sent is still the one scalar 0
        sent = np.broadcast_to(left.bytes_sent, (len(rows) if few else len(leaving),))
        pending = left.wire_bytes_pending
        self.outcome.set(self.alive[rows], self.arrays["now"][rows], left.syncs,
                         sent if few else sent[rows], pending if few else pending[rows], switched)
        self.in_loop = self.in_loop & ~leaving
        self.count = int(np.count_nonzero(self.in_loop))
        if self.count == 0:
            return True
        if self.count < KEEP_FRACTION * len(self.in_loop):
            self._narrow()
        return False

    def _narrow(self) -> None:
        keep = self.in_loop
        self.state, self.dirty = _subset(self.state, keep), _subset(self.dirty, keep)
        self.arrays = {name: _pick(values, keep) for name, values in self.arrays.items()}
        self.alive = self.alive[keep]
        self.in_loop = np.ones(self.count, dtype=bool)

    def finish_one_by_one(self, rule_name: str) -> None:
        """The engine's loop on Python floats for each migration left (the same bits as the arrays)."""
        self._narrow()
        for j, at in enumerate(self.alive.tolist()):
            state, dirty = _subset(self.state, j), _subset(self.dirty, j)
            a = {name: _pick(values, j) for name, values in self.arrays.items()}
            switched = True
            while not rule.below_threshold(state, a["threshold"]):
                if _turn(state, dirty, a, rule_name):
                    switched = False
                    break
            self.outcome.set(at, a["now"], state.syncs, state.bytes_sent, state.wire_bytes_pending, switched)


def _subset(obj: Any, keep: np.ndarray | int) -> Any:
    """A copy of a state or dirty model holding only the kept migrations (or, for an index, that one
    migration's Python numbers)."""
    return dataclasses.replace(obj, **{f.name: _pick(getattr(obj, f.name), keep)
                                       for f in dataclasses.fields(obj)
                                       if isinstance(getattr(obj, f.name), np.ndarray)})


def _pick(values: Any, keep: np.ndarray | int) -> Any:
    """The kept migrations' values (for an index, that one's Python number); a shared number as is."""
    if values.__class__ is not np.ndarray:
        # a numpy scalar as a Python one: cheaper on the engine's scalar path, and the same bits
        return values.item() if isinstance(values, np.generic) else values
    return values[keep].item() if isinstance(keep, int) else values[keep]
