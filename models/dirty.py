"""Dirty-page models. Each answers one question: how many distinct pages did the guest dirty between
t0 and t1? Never more than the pages it writes (its universe), and never negative.

The universe is the written memory, memory x (1 - zero_page_fraction): pages that stay zero are
never dirtied, which is how the test guest behaves (it writes only its region) and why zero pages
cost only a header in the first pass and nothing after.
"""

from __future__ import annotations

import bisect
import csv
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from . import elementwise as ew
from . import units
from .errors import ScenarioError, read_text
from .scenario import VmSpec


class DirtyModel(Protocol):
    universe_pages: float
    # from this time on the model's rates no longer change (needed to call a migration non-converging)
    stationary_after_s: float

    def distinct_pages(self, t0_s: float, t1_s: float) -> float:
        """Pages dirtied in [t0_s, t1_s]; 0 for an empty or reversed interval."""
        ...


@dataclass(frozen=True)
class ConstantDirty:
    """Distinct pages at a constant rate: the closed form's assumption. Like `HotColdDirty`, its
    numbers may be arrays of many migrations' (the fast path). `sweeps`: the pages are written round
    by round (scenario pattern "sweep"; switchover.sync uses it)."""

    rate_pages_s: float
    universe_pages: float
    stationary_after_s: float = 0.0
    sweeps: bool = False

    def distinct_pages(self, t0_s: float, t1_s: float) -> float:
        return ew.minimum(self.universe_pages, self.rate_pages_s * ew.maximum(0.0, t1_s - t0_s))


@dataclass(frozen=True)
class HotColdDirty:
    """A hot set swept continuously (so it saturates: the writable working set) plus a cold linear
    rate over the rest of the written memory."""

    hot_pages: float
    hot_rate_pages_s: float
    cold_rate_pages_s: float
    universe_pages: float
    stationary_after_s: float = 0.0

    def distinct_pages(self, t0_s: float, t1_s: float) -> float:
        dt = ew.maximum(0.0, t1_s - t0_s)
        hot = ew.minimum(self.hot_pages, self.hot_rate_pages_s * dt)
        cold = ew.minimum(self.universe_pages - self.hot_pages, self.cold_rate_pages_s * dt)
        return hot + cold


@dataclass(frozen=True)
class TraceDirty:
    """A measured trace: cumulative distinct pages at each sample time, linear in between, and the
    last interval's rate held after the trace ends."""

    times_s: tuple[float, ...]
    cumulative_pages: tuple[float, ...]
    universe_pages: float

    @property
    def stationary_after_s(self) -> float:
        return self.times_s[-1]

    def _cumulative(self, t_s: float) -> float:
        times, cum = self.times_s, self.cumulative_pages
        if t_s >= times[-1]:
            tail_rate = (cum[-1] - cum[-2]) / (times[-1] - times[-2])
            return cum[-1] + tail_rate * (t_s - times[-1])
        i = bisect.bisect_right(times, t_s)
        t_a, t_b = times[i - 1], times[i]
        return cum[i - 1] + (cum[i] - cum[i - 1]) * (t_s - t_a) / (t_b - t_a)

    def distinct_pages(self, t0_s: float, t1_s: float) -> float:
        if t1_s <= t0_s:
            return 0.0
        return min(self.universe_pages, self._cumulative(t1_s) - self._cumulative(t0_s))


def load_trace(path: Path) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Reads a (t_s, dirty_pages) CSV into sample times (starting at 0) and cumulative pages."""
    field = "vm.dirty.path"
    try:
        rows = list(csv.DictReader(read_text(path, field).splitlines()))
    except csv.Error as exc:
        raise ScenarioError(field, str(path), f"not a CSV table ({exc})") from None
    if not rows or set(rows[0]) != {"t_s", "dirty_pages"}:
        raise ScenarioError(field, str(path), "needs a header t_s,dirty_pages and at least one row")
    times, cumulative = [0.0], [0.0]
    for line_no, row in enumerate(rows, start=2):
        try:
            t_s, pages = float(row["t_s"]), float(row["dirty_pages"])
        except (TypeError, ValueError):
            raise ScenarioError(field, str(path), f"line {line_no}: numbers expected") from None
        if not (math.isfinite(t_s) and math.isfinite(cumulative[-1] + pages)):
            raise ScenarioError(field, str(path), f"line {line_no}: finite numbers expected "
                                                  f"(t_s = {t_s!r}, dirty_pages = {pages!r})")
        if t_s <= times[-1] or pages < 0:
            raise ScenarioError(field, str(path),
                                f"line {line_no}: t_s must increase from > 0 and dirty_pages be >= 0")
        times.append(t_s)
        cumulative.append(cumulative[-1] + pages)
    return tuple(times), tuple(cumulative)


def written_pages(vm: VmSpec) -> float:
    return units.mib_to_pages(vm.memory_mib, vm.page_size_bytes) * (1.0 - vm.zero_page_fraction)


def dirty_model_for(vm: VmSpec) -> DirtyModel:
    spec, page = vm.dirty, vm.page_size_bytes
    universe = written_pages(vm)
    if spec.model == "constant":
        return ConstantDirty(units.mib_s_to_pages_s(spec.rate_mib_s, page), universe,
                             sweeps=spec.pattern == "sweep")
    if spec.model == "hotcold":
        return HotColdDirty(units.mib_to_pages(spec.hot_set_mib, page),
                            units.mib_s_to_pages_s(spec.hot_rate_mib_s, page),
                            units.mib_s_to_pages_s(spec.cold_rate_mib_s, page), universe)
    times, cumulative = load_trace(Path(spec.path))
    return TraceDirty(times, cumulative, universe)
