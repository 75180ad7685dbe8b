"""The pre-copy policy as pure functions: QEMU's switchover rule and the textbook pass-end rule.

Both engines (the SimPy engine, and the vectorised fast path) drive these functions; neither
re-implements them. QEMU's rule (migration/migration.c `migration_iteration_run`, migration/ram.c):

* QEMU keeps a bitmap of pending pages. Between checks it sends pages, for ~50 ms (`MAX_WAIT`) when
  the link is the limit, or one 100 ms rate-limit window's budget (`BUFFER_DELAY`) when the bandwidth
  cap is; a loop that finds the bitmap empty returns at once.
* At each check, if the pending estimate (bitmap pages x page size) is below the threshold
  (bandwidth estimate x downtime-limit), QEMU syncs the dirty bitmap: one iteration, libvirt's
  `memory_iteration`. Pages dirtied since the last sync join the bitmap; a page dirtied again while
  still pending is counted once.
* If the exact pending is then below the threshold, it stops the guest and sends the rest without the
  bandwidth cap; otherwise it keeps sending.
* The pages go in address order (ram_find_and_save_block walks the bitmap from where it stopped, and
  wraps): where the zero pages lie decides when the estimate, which counts them as full pages, falls
  under the threshold (the scenario's `vm.zero_page_layout`). Written-low: the first pass sends all the
  data, then the zero pages in one burst; pages dirtied meanwhile lie behind the walk (every page
  ahead of it is still pending from the setup sync), so they go after that burst, once the walk wraps.

The pass-end rule syncs only when the bitmap is empty, which is what the closed form solves.

Every function takes one migration's floats or whole arrays of migrations in the same `PrecopyState`
(see `elementwise`); branches are written as selections so that both give the same bits. With arrays,
all migrations in a state sync together, so `syncs` stays one integer.

Worked example (closed_form.py's VM, qemu rule): 4 GiB, 10 Gbit/s, 238.4 MiB/s dirty, 300 ms: checks every
50 ms move 62.5 MB each; the bitmap first falls under 375 MB at t = 3.15 s (357.5 MB left), the sync
brings it to ~1080 MB; the next syncs come at 3.75 s (~468 MB) and 3.85 s (~368 MB < 375 MB): stop,
~294 ms of final copy, 5 iterations counting the setup and completion syncs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from . import elementwise as ew
from .dirty import DirtyModel

# QEMU migration/ram.c: one send loop returns after MAX_WAIT = 50 ms
LINK_BOUND_CHECK_INTERVAL_S = 0.050
# QEMU migration/migration.c: BUFFER_DELAY = 100 ms, the rate-limit window
CAP_BOUND_CHECK_INTERVAL_S = 0.100
# QEMU migration/ram.c save_page_header: 8-byte offset|flags word before every page
PAGE_HEADER_BYTES = 8
# a zero page is its header plus one byte (save_zero_page)
ZERO_PAGE_WIRE_BYTES = PAGE_HEADER_BYTES + 1
# A migration whose pending set's excess over the threshold shrinks by less than this fraction for
# NO_PROGRESS_SYNCS syncs in a row, once its dirty rate no longer changes, is declared non-converging
# (QEMU itself would go on forever).
NO_PROGRESS_FRACTION = 0.005
NO_PROGRESS_SYNCS = 20
# a hard stop for pathological inputs, far beyond any real migration's iteration count
MAX_SYNCS = 200_000


@dataclass
class PrecopyState:
    """Where one live phase stands. Mutable on purpose: the engines advance it step by step."""

    page_size_bytes: int
    universe_pages: float
    t_s: float = 0.0
    bitmap_data_pages: float = 0.0
    bitmap_zero_pages: float = 0.0
    last_sync_s: float = 0.0
    # the guest's vCPUs stop dirtying from here on (a forced pause); inf while it runs
    dirty_until_s: float = math.inf
    syncs: int = 0
    bytes_sent: float = 0.0
    best_gap_bytes: float = math.inf
    syncs_without_progress: int = 0
    # the written-low layout (vm.zero_page_layout): the walk meets the pending zero pages after
    # `ahead_data_pages` of the pending data pages (those of the first pass it has not reached yet)
    written_low: bool = False
    ahead_data_pages: float = 0.0

    @property
    def bitmap_pages(self) -> float:
        return self.bitmap_data_pages + self.bitmap_zero_pages

    @property
    def pending_bytes(self) -> float:
        """QEMU's estimate: pages x page size, zero or not."""
        return self.bitmap_pages * self.page_size_bytes

    @property
    def wire_bytes_per_page(self) -> float:
        pages = self.bitmap_pages
        nonempty = pages > 0
        data_page = self.page_size_bytes + PAGE_HEADER_BYTES
        data = self.bitmap_data_pages * data_page
        mixed = (data + self.bitmap_zero_pages * ZERO_PAGE_WIRE_BYTES) / ew.where(nonempty, pages, 1.0)
        return ew.where(nonempty, mixed, data_page)

    @property
    def wire_bytes_pending(self) -> float:
        return self.bitmap_pages * self.wire_bytes_per_page


def start_precopy(page_size_bytes: int, written_pages: float, zero_pages: float,
                  layout: str = "spread") -> PrecopyState:
    """The setup sync: every page of guest RAM is pending (QEMU counts it as iteration 1). `layout`:
    the scenario's `vm.zero_page_layout` (one string for all the migrations, or an array of them)."""
    written_low = layout == "written-low"
    return PrecopyState(page_size_bytes=page_size_bytes, universe_pages=written_pages,
                        bitmap_data_pages=written_pages, bitmap_zero_pages=zero_pages, syncs=1,
                        written_low=written_low, ahead_data_pages=ew.where(written_low, written_pages, 0.0))


def threshold_bytes(rate_bytes_s: float, max_downtime_s: float) -> float:
    """QEMU: threshold_size = bandwidth estimate x downtime-limit."""
    return rate_bytes_s * max_downtime_s


def check_interval_s(cap_bound: bool) -> float:
    return ew.where(cap_bound, CAP_BOUND_CHECK_INTERVAL_S, LINK_BOUND_CHECK_INTERVAL_S)


def final_copy_s(wire_bytes: float, final_bytes_s: float, cap_bound: bool,
                 socket_backlog_bytes: float) -> float:
    """The stop-and-copy's transfer, uncapped. A link-bound live phase leaves the sender's socket and
    the link's queue full when QEMU stops the guest, and that backlog drains first; a cap-bound one
    writes slower than the link carries, leaving them empty. Floats or arrays (the fast path)."""
    return (wire_bytes + ew.where(cap_bound, 0.0, socket_backlog_bytes)) / final_bytes_s


def time_to_next_sync(state: PrecopyState, rule: str, rate_bytes_s: float, threshold_b: float,
                      interval_s: float) -> float:
    """Seconds of sending, at a constant rate, until the rule next syncs the dirty bitmap."""
    per_page = state.wire_bytes_per_page
    pages = state.bitmap_pages
    drain_s = pages * per_page / rate_bytes_s
    if rule == "pass-end":
        return drain_s
    pages_per_check = rate_bytes_s * interval_s / per_page
    threshold_pages = threshold_b / state.page_size_bytes
    over = pages - threshold_pages
    spread = ew.where(over < 0, 0, ew.floor(over / pages_per_check) + 1)
    # written-low: the check after the wire bytes of the first `over` pages in the walk's order
    walked = walk_wire_bytes(state, ew.maximum(over, 0.0))
    written_low = ew.where(over < 0, 0, ew.floor(walked / (rate_bytes_s * interval_s)) + 1)
    checks = ew.where(state.written_low, written_low, spread)
    return ew.minimum(checks * interval_s, drain_s)


def walk_wire_bytes(state: PrecopyState, pages: float) -> float:
    """With the written-low layout: the wire bytes of the first `pages` pending pages in the walk's
    order (the first pass's data still ahead, the zero pages, then the data dirtied behind it)."""
    data_page = state.page_size_bytes + PAGE_HEADER_BYTES
    ahead = ew.minimum(pages, state.ahead_data_pages)
    zero = ew.minimum(pages - ahead, state.bitmap_zero_pages)
    return (ahead + (pages - ahead - zero)) * data_page + zero * ZERO_PAGE_WIRE_BYTES


def send(state: PrecopyState, duration_s: float, rate_bytes_s: float) -> None:
    """Sends for `duration_s` at `rate_bytes_s` in the walk's order (QEMU walks the bitmap in address
    order): spread, zero and data pages in proportion; written-low, the data still ahead of the walk,
    then the zero pages, then the data behind it. (Spread is the model as it was before layouts: after
    a sync QEMU's walk sends the first pass's tail before the pages dirtied behind it, which spread
    mixes in proportion; README, "Where the zero pages lie".)"""
    pending_wire = state.wire_bytes_pending
    # a step that ends before it starts (a timeout already past) sends nothing
    wire = ew.maximum(0.0, ew.minimum(duration_s * rate_bytes_s, pending_wire))
    # spread: when nothing moves the fraction sent is 0, whatever the divisor
    sent_fraction = wire / ew.where(wire > 0, pending_wire, 1.0)
    spread_data = state.bitmap_data_pages - state.bitmap_data_pages * sent_fraction
    spread_zero = state.bitmap_zero_pages - state.bitmap_zero_pages * sent_fraction
    # written-low: each part in turn takes what the wire bytes left by the one before pay for
    data_page = state.page_size_bytes + PAGE_HEADER_BYTES
    ahead = ew.minimum(wire / data_page, state.ahead_data_pages)
    left = ew.maximum(0.0, wire - ahead * data_page)
    zero = ew.minimum(left / ZERO_PAGE_WIRE_BYTES, state.bitmap_zero_pages)
    left = ew.maximum(0.0, left - zero * ZERO_PAGE_WIRE_BYTES)
    behind = ew.minimum(left / data_page, ew.maximum(0.0, state.bitmap_data_pages - state.ahead_data_pages))
    low = state.written_low
    # new values, never in-place updates: a state's arrays may be the caller's
    state.bitmap_data_pages = ew.where(low, state.bitmap_data_pages - ahead - behind, spread_data)
    state.bitmap_zero_pages = ew.where(low, state.bitmap_zero_pages - zero, spread_zero)
    state.ahead_data_pages = ew.where(low, state.ahead_data_pages - ahead, state.ahead_data_pages)
    state.bytes_sent = state.bytes_sent + wire
    state.t_s = state.t_s + duration_s


def sync(state: PrecopyState, dirty: DirtyModel) -> None:
    """One bitmap sync: pages dirtied since the last one join the pending set, counted once where
    they were still pending (a dirtied page is as likely to be any written page). A sweep (pattern
    "sweep": each page written once per round) does not come back within a round to a page still
    pending from an earlier sync, so after the first sync all its pages are new; the first sync's
    pending pages are the setup's, which it meets at random."""
    until = ew.minimum(state.t_s, state.dirty_until_s)
    # an empty or reversed interval dirties nothing (the DirtyModel contract)
    dirtied = dirty.distinct_pages(state.last_sync_s, until)
    written = state.universe_pages
    # with nothing written the bitmap is empty and stays so, whatever the divisor
    clean_fraction = 1.0 - state.bitmap_data_pages / ew.where(written > 0, written, 1.0)
    if getattr(dirty, "sweeps", False) and state.syncs > 1:
        clean_fraction = 1.0  # the written universe still caps the pending set below
    state.bitmap_data_pages = ew.minimum(written, state.bitmap_data_pages + dirtied * clean_fraction)
    state.last_sync_s = state.t_s
    state.syncs += 1


def below_threshold(state: PrecopyState, threshold_b: float) -> bool:
    return state.pending_bytes < threshold_b


def stalled(state: PrecopyState, threshold_b: float, stationary_after_s: float) -> bool:
    """After a sync that did not switch over: has the gap between the pending set and the threshold
    stopped shrinking for good? A geometric approach (dirty rate below bandwidth) keeps shrinking it
    by a fixed fraction; a saturated hot set or a rate above bandwidth does not."""
    gap = state.pending_bytes - threshold_b
    progressed = gap < state.best_gap_bytes * (1.0 - NO_PROGRESS_FRACTION)
    waited = state.syncs_without_progress + ew.where(state.t_s >= stationary_after_s, 1, 0)
    state.best_gap_bytes = ew.where(progressed, gap, state.best_gap_bytes)
    state.syncs_without_progress = ew.where(progressed, 0, waited)
    return (state.syncs_without_progress >= NO_PROGRESS_SYNCS) | (state.syncs >= MAX_SYNCS)
