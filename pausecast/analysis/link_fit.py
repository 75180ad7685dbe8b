"""The link's parameters fitted to measured runs (models/stream.py): `link.efficiency` and
`link.sender_mib_s` (the live phase's), `link.final_copy_efficiency` and `link.final_copy_sender_mib_s`
(the stop-and-copy's), and `link.socket_backlog_mib`, by least squares over every run's live phase and
final copy.

The model's phases are linear in the inverses of the rates (models/stream.py, models/switchover.py
`final_copy_s`). With u = 1/efficiency, f = 1/final_copy_efficiency, v = backlog/final_copy_efficiency,
q = 1/sender and g = 1/final-copy sender, for a run of line rate L (bytes/s) that sent W bytes live and
had w bytes pending at the stop:

    shaped link, uncapped, link-bound     precopy_s = u W / L     final_copy_s = f w / L + v / L
    shaped link, uncapped, sender-bound   precopy_s = q W         final_copy_s = f w / L
    shaped link, capped                                           final_copy_s = f w / L  (queue empty)
    unshaped, uncapped                    precopy_s = q W         final_copy_s = g w
    unshaped, capped                                              final_copy_s = g w

with QEMU's own measure of the live stream's rate a row beside each uncapped live phase. A capped
live phase runs at the cap, which says nothing about the link. A shaped link bound a live phase where
that phase moved LINK_BOUND_SHARE of the line rate or more on a link at most SLOWER_LINK_SHARE of the
sender's live rate (`live_bound`); under the share the sender did, and in between both did:
with the guest's vCPUs and QEMU's thread sharing a small host's cores, it moved 57-67 MiB/s live on
the veth and on a 1000 Mbit/s tbf link alike (2026-12-03), where the stop-and-copy, the guest
stopped, ran at 99-110 MiB/s through that link. Hence the two pairs of rates. Each row is weighted by
1 / max(measured, FLOOR_S), so that a long phase does not drown the short ones: the residuals are
relative. The spreads are one standard error, from the weighted residuals (s^2 (A'A)^-1), carried to
the parameters (efficiency = 1/u, backlog = v/f, ...) to first order.

The bytes: a record measures all the RAM bytes sent (libvirt's memory_processed, QEMU's
ram.transferred: pages and their headers), not how they split at the stop. A real run's job
statistics, sampled while it ran, give the bytes sent by QEMU's STOP (`final_wire_bytes_measured`);
without them (records the model made) the model's own final copy at the parameters of the round
before gives w (`link_run`), and W is the rest; `fit_link_runs`
repeats fit and split ROUNDS times (w depends on the rates through QEMU's threshold) and keeps the
round that fitted best.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from ..models.limits import EFFICIENCY
from ..models.record import Measured, MigrationRecord
from ..models.scenario import Scenario
from ..models.stream import scenario_rates
from ..models.units import bytes_to_mib, mbit_s_to_bytes_s, mib_s_to_bytes_s, mib_to_bytes, ms_to_s

# a phase shorter than this is weighted as if it were this long: a few ms of timer granularity and
# log resolution are its noise, not a fraction of it
FLOOR_S = 0.020
# fit, split, fit again: the final copy's share moves the fit by well under its spread after two
ROUNDS = 8
PARAMETERS = ("efficiency", "final_copy_efficiency", "socket_backlog_mib", "sender_mib_s",
              "final_copy_sender_mib_s")
# the fit's unknowns: 1/efficiency, 1/final_copy_efficiency, backlog/final_copy_efficiency (bytes),
# 1/sender and 1/final-copy sender (s/byte)
COLUMNS = ("u", "f", "v", "q", "g")
# a tbf link gave the live stream 0.87-0.96 of its rate where it bound it; a sender-bound live phase on
# the 1000 Mbit/s one moved 0.48-0.56 of it (2026-12-03)
LINK_BOUND_SHARE = 0.75
# a link at most this share of the sender's live rate binds the live phase throughout (calibrate shapes
# its extra run so)
SLOWER_LINK_SHARE = 0.5
# a live phase this long spans several of QEMU's 100 ms rate windows
SENDER_MIN_LIVE_S = 0.5


@dataclass(frozen=True)
class LinkRun:
    """One measured run as the fit sees it."""

    # the link's shaped rate in Mbit/s; 0 when nothing shapes it (a veth, or real hosts' own link)
    shaped_mbit_s: float
    capped: bool
    precopy_s: float
    final_copy_s: float
    live_wire_bytes: float
    final_wire_bytes: float
    # QEMU's own measure of the live stream (the median of its per-window transfer rates); NaN: none
    stream_bytes_s: float = math.nan
    # whether final_wire_bytes is measured (a real run's job statistics) or the model's split
    final_measured: bool = True


@dataclass(frozen=True)
class LinkFit:
    """Each parameter with its standard error; NaN where the runs could not tell it (`not_fitted` says
    why)."""

    values: dict[str, float]
    spreads: dict[str, float]
    not_fitted: dict[str, str]
    rows: int
    # the fitted rows' relative residuals (measured - fitted) / max(measured, FLOOR_S)
    residuals: tuple[float, ...]

    def link_values(self) -> dict[str, float]:
        """What the fit gives a scenario's [link]: the fitted parameters, within the field's range."""
        out = {k: v for k, v in self.values.items() if math.isfinite(v)}
        for name in ("efficiency", "final_copy_efficiency"):
            if name in out:
                out[name] = min(1.0, max(EFFICIENCY.value, out[name]))
        if "socket_backlog_mib" in out:
            out["socket_backlog_mib"] = max(0.0, out["socket_backlog_mib"])
        return out


def fit_link(runs: Sequence[LinkRun]) -> LinkFit:
    """Least squares over all runs' phases (the module's rows)."""
    # ({column: coefficient}, measured, its weight)
    rows: list[tuple[dict[str, float], float, float]] = []

    def phase(coefficients: dict[str, float], seconds: float) -> None:
        rows.append((coefficients, seconds, 1.0 / max(seconds, FLOOR_S)))

    sender_bytes_s = sender_live_bytes_s(runs)
    for r in runs:
        # seconds per byte of the live stream, as QEMU measured it (relative weight)
        per_byte = 1.0 / r.stream_bytes_s if r.stream_bytes_s > 0 else math.nan
        line = mbit_s_to_bytes_s(r.shaped_mbit_s) if r.shaped_mbit_s > 0 else math.inf
        bound = live_bound(r, sender_bytes_s)
        link_bound = bound == "link"
        if bound in ("link", "sender"):
            live = {"u": 1.0 / line} if link_bound else {"q": 1.0}
            phase({k: x * r.live_wire_bytes for k, x in live.items()}, r.precopy_s)
            rows.append((live, per_byte, 1.0 / per_byte))
        if r.shaped_mbit_s > 0:
            final = {"f": r.final_wire_bytes / line}
            phase({**final, "v": 1.0 / line} if link_bound else final, r.final_copy_s)
        else:
            # the model's own split ties the stop-and-copy's bytes to the rates being fitted: only
            # bytes measured at the stop tell its sender from the live phase's
            phase({"g" if r.final_measured else "q": r.final_wire_bytes}, r.final_copy_s)
    rows = [row for row in rows if math.isfinite(row[1]) and all(math.isfinite(x) for x in row[0].values())]
    columns = [k for k in COLUMNS if any(c.get(k, 0.0) != 0.0 for c, _, _ in rows)]
    not_fitted = _not_fitted(runs, columns)
    if not columns:
        nan = dict.fromkeys(PARAMETERS, math.nan)
        return LinkFit(nan, dict(nan), not_fitted, 0, ())
    weights = np.array([w for _, _, w in rows])
    a = np.array([[c.get(k, 0.0) for k in columns] for c, _, _ in rows]) * weights[:, None]
    b = np.array([t for _, t, _ in rows]) * weights
    # columns of very different sizes (bytes / bytes/s against 1 / bytes/s): scale them to 1 first
    scale = np.linalg.norm(a, axis=0)
    x_scaled, *_ = np.linalg.lstsq(a / scale, b, rcond=None)
    x = x_scaled / scale
    residuals = b - a @ x
    dof = len(b) - len(columns)
    s2 = float(residuals @ residuals) / dof if dof > 0 else math.nan
    cov = s2 * np.linalg.pinv((a / scale).T @ (a / scale)) / np.outer(scale, scale)
    est = dict(zip(columns, x, strict=True))
    var = {k: cov[i, i] for i, k in enumerate(columns)}
    values, spreads = dict.fromkeys(PARAMETERS, math.nan), dict.fromkeys(PARAMETERS, math.nan)
    for column, name in (("u", "efficiency"), ("f", "final_copy_efficiency")):
        if column in est:
            values[name] = 1.0 / est[column]
            spreads[name] = math.sqrt(var[column]) / est[column] ** 2
    if "f" in est and "v" in est:
        i_f, i_v = columns.index("f"), columns.index("v")
        f, v = est["f"], est["v"]
        grad = np.zeros(len(columns))
        grad[i_f], grad[i_v] = -v / f**2, 1.0 / f
        values["socket_backlog_mib"] = bytes_to_mib(v / f)
        spreads["socket_backlog_mib"] = bytes_to_mib(math.sqrt(max(0.0, float(grad @ cov @ grad))))
    for column, name in (("q", "sender_mib_s"), ("g", "final_copy_sender_mib_s")):
        if column in est and est[column] > 0:
            values[name] = 1.0 / mib_s_to_bytes_s(est[column])
            spreads[name] = math.sqrt(var[column]) / est[column] ** 2 / mib_s_to_bytes_s(1.0)
    return LinkFit(values, spreads, not_fitted, len(b), tuple(float(e) for e in residuals))


def live_rate_bytes_s(r: LinkRun) -> float:
    """A run's live phase: its bytes over its time (0 for no live phase)."""
    return r.live_wire_bytes / r.precopy_s if r.precopy_s > 0 else 0.0


def sender_live_bytes_s(runs: Sequence[LinkRun]) -> float:
    """The sender's live rate on this machine: the fastest uncapped live phase on an unshaped path
    whose bytes at the stop were measured (inf without one: a record the model made splits its bytes
    at the fit's current guess, which cannot say what bound it) and which lasted SENDER_MIN_LIVE_S
    (QEMU may stop at its setup sync on the veth: 0.12 s live, all else in the stop-and-copy)."""
    rates = [live_rate_bytes_s(r) for r in runs if r.shaped_mbit_s <= 0 and not r.capped
             and r.final_measured and r.precopy_s >= SENDER_MIN_LIVE_S]
    return max(rates) if rates else math.inf


def live_bound(r: LinkRun, sender_bytes_s: float = math.inf) -> str:
    """What bound a run's live phase: "cap"; on an unshaped path "sender"; on a shaped link "sender"
    below LINK_BOUND_SHARE of the line rate, "link" at or above it where the sender's own live rate
    (`sender_live_bytes_s`) is at least 1 / SLOWER_LINK_SHARE times the line rate, else "unclear": a
    sender that fast only at times (its 100 ms rates dipped to half its mean on the testbed) binds
    part of the phase and the link the rest, which tells neither."""
    if r.capped:
        return "cap"
    if r.shaped_mbit_s <= 0:
        return "sender"
    line = mbit_s_to_bytes_s(r.shaped_mbit_s)
    if live_rate_bytes_s(r) < LINK_BOUND_SHARE * line:
        return "sender"
    return "link" if SLOWER_LINK_SHARE * sender_bytes_s >= line else "unclear"


def _not_fitted(runs: Sequence[LinkRun], columns: list[str]) -> dict[str, str]:
    live = [f"{bytes_to_mib(live_rate_bytes_s(r)):.0f} MiB/s on {r.shaped_mbit_s:g} Mbit/s"
            for r in runs if r.shaped_mbit_s > 0 and not r.capped]
    out = {}
    if "u" not in columns:
        out["efficiency"] = (
            f"no uncapped shaped run's live phase was the link's ({', '.join(live)}): under "
            f"{LINK_BOUND_SHARE:.0%} of the line rate the sender bound it, and over it on a link faster "
            f"than {SLOWER_LINK_SHARE:g} x the sender's live rate both did"
            if live else "no uncapped run on a shaped link (a link of known rate): its share of the line "
                         "rate cannot be told")
    if "f" not in columns:
        out["final_copy_efficiency"] = "no run on a shaped link: its stop-and-copy's share cannot be told"
    if "v" not in columns:
        out["socket_backlog_mib"] = ("no link-bound live phase on a shaped link: only a link-bound "
                                     "stop-and-copy drains a backlog")
    if "q" not in columns:
        out["sender_mib_s"] = "no uncapped live phase on an unshaped path: the link bound every stream"
    if "g" not in columns:
        out["final_copy_sender_mib_s"] = (
            "no run on an unshaped path whose bytes at the stop were measured (job statistics): the "
            "live phase's sender rate stands for it")
    return out


def final_wire_bytes_measured(measured: MigrationRecord,
                              samples: Sequence[tuple[float, int, float]]) -> float:
    """The bytes a real run sent with the guest stopped, from its job statistics: all it sent less
    what it had sent at QEMU's STOP, carried there from the last sample before it at that sample's
    rate. `samples`: (seconds after the call, memory_processed bytes, memory_bps) of the running
    job. NaN when no sample came before the stop."""
    stop_s = Measured.of(measured).qemu_stop_s
    before = [s for s in samples if s[0] <= stop_s and s[1] > 0]
    if not before or not math.isfinite(stop_s):
        return math.nan
    t_s, processed, bps = before[-1]
    return max(0.0, measured.bytes_sent - (processed + bps * (stop_s - t_s)))


def link_run(scenario: Scenario, measured: MigrationRecord, predicted: MigrationRecord,
             shaped: bool, final_wire_bytes: float = math.nan) -> LinkRun:
    """A run split into its live phase's bytes and its final copy's: the final copy's as measured
    (`final_wire_bytes_measured`) where known, else as the model splits it (its prediction's final copy
    time at its rate, less the backlog it drained); the live phase's the rest of what was sent."""
    link = scenario.link
    rates = scenario_rates(scenario)
    backlog = mib_to_bytes(link.socket_backlog_mib) if rates.link_bound else 0.0
    final_wire = (final_wire_bytes if math.isfinite(final_wire_bytes)
                  else max(0.0, ms_to_s(predicted.final_copy_ms) * rates.final_bytes_s - backlog))
    return LinkRun(shaped_mbit_s=link.bandwidth_mbit_s if shaped else 0.0, capped=bool(rates.cap_bound),
                   precopy_s=measured.precopy_time_s, final_copy_s=ms_to_s(measured.final_copy_ms),
                   live_wire_bytes=max(0.0, measured.bytes_sent - final_wire), final_wire_bytes=final_wire,
                   final_measured=math.isfinite(final_wire_bytes),
                   stream_bytes_s=mib_s_to_bytes_s(Measured.of(measured).stream_mib_s)
                   if measured.engine == "executor" else _stream_bytes_s(predicted, rates))


def _stream_bytes_s(record: MigrationRecord, rates) -> float:
    """What QEMU would measure as the live stream's rate, for a record the model made: its live rate."""
    return float(rates.live_bytes_s) if record.precopy_time_s > 0 else math.nan


def fit_link_runs(runs: Sequence[tuple[Scenario, MigrationRecord, bool, float]],
                  predict: Callable[[Scenario], MigrationRecord]) -> LinkFit:
    """Fits the link to measured runs, each (its scenario, its record, whether its link was shaped, its
    final copy's bytes as measured or NaN), alternating the fit and the model's split of the bytes of
    each run that has no measured split (`link_run`) ROUNDS times."""
    current = {k: v for k, v in dataclasses.asdict(runs[0][0].link).items() if k in PARAMETERS}
    fits = []
    for _ in range(ROUNDS):
        split = []
        for scenario, record, shaped, final_wire in runs:
            # a run's own link rate stays: only the machine's parameters are the fit's
            at = scenario.replace(link=dataclasses.replace(scenario.link, **current))
            split.append(link_run(at, record, predict(at), shaped, final_wire))
        fits.append(fit_link(split))
        current.update(fits[-1].link_values())
    # a final copy's size jumps where the model's iteration count does, so the rounds may settle on a
    # cycle rather than a point: keep the round whose split its fit explained best
    return min(fits, key=lambda f: float(np.sum(np.square(f.residuals))))
