"""libvirt v3's phase layout, written once: which fixed cost and which half RTT falls where.

    begin | h + prepare + h | setup + 2h, live pre-copy, handshake + final copy
          | h + finish + resume | h + confirm                                  (h = RTT / 2)

`layout` names those spans, each a tuple of the delays waited one after the other. The SimPy engine
(sim/engine.py) waits them one by one with port requests between them, the fast path (sim/fast.py)
folds them over arrays (`opening`, `closing`), calibration (analysis/calibration.py) reads a measured
run's boundaries back into fixed costs (`inverse`). Every sum is folded in the engine's order,
`(now + a) + b`, so that a time is the same float on either engine (tests/test_fast_path.py holds them
bit for bit); the arguments may be Python floats or numpy arrays.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .units import ms_to_s

OVERHEAD_NAMES = ("begin", "prepare", "setup", "handshake", "finish", "resume", "confirm", "announce")


@dataclass(frozen=True)
class Overheads:
    """The fixed costs in seconds (floats or arrays), as models/overheads.py's OVERHEAD_FIELDS."""

    begin_s: Any
    prepare_s: Any
    setup_s: Any
    handshake_s: Any
    finish_s: Any
    resume_s: Any
    confirm_s: Any
    announce_s: Any

    @classmethod
    def from_ms(cls, costs_ms: Any) -> Overheads:
        """From anything with `<name>_ms` attributes (a scenario's OverheadsSpec) or such a mapping."""
        get = costs_ms.__getitem__ if isinstance(costs_ms, dict) else lambda k: getattr(costs_ms, k)
        return cls(*(ms_to_s(get(f"{name}_ms")) for name in OVERHEAD_NAMES))


@dataclass(frozen=True)
class Layout:
    """The delays of one migration, span by span, in the order they are waited. Port requests fall
    between `prepare_before_ports` and `prepare_after_ports`, after `finish_before_ports` and after
    `confirm`; the live pre-copy between `setup` and the stop-and-copy (`stop_and_copy_s`)."""

    begin: tuple[Any, ...]
    prepare_before_ports: tuple[Any, ...]
    prepare_after_ports: tuple[Any, ...]
    # Perform's start -> the first page: QEMU's setup and the migration stream's round trip
    setup: tuple[Any, ...]
    finish_before_ports: tuple[Any, ...]
    # libvirt's "cont" -> QEMU's RESUME on the destination
    resume: tuple[Any, ...]
    confirm: tuple[Any, ...]
    # Finish failed: Confirm resumes the source guest instead of killing it
    confirm_after_failure: tuple[Any, ...]
    # the pre-copy was aborted: the destination QEMU is killed (Finish), the source told (Confirm)
    finish_after_abort: tuple[Any, ...]
    confirm_after_abort: tuple[Any, ...]
    # post-copy: the destination runs once the device state is there; its port follows
    postcopy_resume: tuple[Any, ...]
    finish_after_postcopy: tuple[Any, ...]


def layout(oh: Overheads, half_rtt_s: Any) -> Layout:
    h = half_rtt_s
    return Layout(
        begin=(oh.begin_s,),
        prepare_before_ports=(h + oh.prepare_s,),
        prepare_after_ports=(h,),
        setup=(oh.setup_s + 2 * h,),
        finish_before_ports=(h, oh.finish_s),
        resume=(oh.resume_s,),
        confirm=(h, oh.confirm_s),
        confirm_after_failure=(h, oh.resume_s),
        finish_after_abort=(2 * h,),
        confirm_after_abort=(h,),
        postcopy_resume=(h + oh.resume_s,),
        finish_after_postcopy=(h + oh.finish_s,),
    )


def after(t_s: Any, *spans: tuple[Any, ...]) -> Any:
    """`t_s` plus the spans' delays, added one at a time as the engine waits them."""
    for span in spans:
        for delay_s in span:
            t_s = t_s + delay_s
    return t_s


def stop_and_copy_s(oh: Overheads, final_copy_s: Any) -> Any:
    """Source stop -> the end of Perform: the handshake, then the final copy."""
    return oh.handshake_s + final_copy_s


@dataclass(frozen=True)
class Opening:
    """Begin, Prepare and Perform's setup: up to the first page, from the migration's start."""

    begin_end_s: Any
    prepare_end_s: Any
    live_start_s: Any


def opening(oh: Overheads, half_rtt_s: Any, start_s: Any = 0.0) -> Opening:
    spans = layout(oh, half_rtt_s)
    begin_end = after(start_s, spans.begin)
    prepare_end = after(begin_end, spans.prepare_before_ports, spans.prepare_after_ports)
    return Opening(begin_end, prepare_end, after(prepare_end, spans.setup))


@dataclass(frozen=True)
class Closing:
    """From the source's stop: the end of Perform, the destination's start (the end of Finish) and
    the end of Confirm. The pause window is source stop -> destination start."""

    perform_end_s: Any
    destination_start_s: Any
    confirm_end_s: Any


def closing(oh: Overheads, half_rtt_s: Any, source_stop_s: Any, final_copy_s: Any) -> Closing:
    spans = layout(oh, half_rtt_s)
    perform_end = source_stop_s + stop_and_copy_s(oh, final_copy_s)
    started = after(perform_end, spans.finish_before_ports, spans.resume)
    return Closing(perform_end, started, after(started, spans.confirm))


@dataclass(frozen=True)
class Marks:
    """A run's boundaries and pause-window parts, seconds; what `forward` lays out and `inverse` reads.
    Calibration builds one from a measured record (analysis/calibration.py `marks_of`)."""

    begin_start_s: float
    prepare_start_s: float
    perform_start_s: float
    live_start_s: float
    source_stop_s: float
    handshake_s: float
    final_copy_s: float
    resume_s: float
    # the end of the pause window: source stop + libvirt's downtime
    destination_start_s: float
    total_time_s: float
    # QEMU's RESUME on the destination, which QEMU's first self-announce follows; in the layout it is
    # the destination's start, in a measured run it is QEMU's own event
    destination_resume_s: float
    # the destination port's first frame from the guest; NaN when no probe watched the port
    port_first_frame_s: float


def forward(oh: Overheads, half_rtt_s: float, precopy_s: float, final_copy_s: float,
            start_s: float = 0.0) -> Marks:
    """One migration's boundaries from its fixed costs and its live and final-copy durations."""
    o = opening(oh, half_rtt_s, start_s)
    stop = o.live_start_s + precopy_s
    c = closing(oh, half_rtt_s, stop, final_copy_s)
    return Marks(start_s, o.begin_end_s, o.prepare_end_s, o.live_start_s, stop, oh.handshake_s, final_copy_s,
                 oh.resume_s, c.destination_start_s, c.confirm_end_s, c.destination_start_s,
                 c.destination_start_s + oh.announce_s)


def inverse(m: Marks, half_rtt_s: float) -> Overheads:
    """The fixed costs that `forward` needs to give back `m`'s boundaries: each the difference of two
    consecutive boundaries, less the half RTTs the layout adds itself. Finish is what remains of the
    pause window; announce is 0 when no probe watched the port (QEMU announces as it resumes)."""
    pause_s = m.destination_start_s - m.source_stop_s
    first_frame = m.port_first_frame_s
    return Overheads(
        begin_s=m.prepare_start_s - m.begin_start_s,
        prepare_s=(m.perform_start_s - m.prepare_start_s) - 2 * half_rtt_s,
        setup_s=(m.live_start_s - m.perform_start_s) - 2 * half_rtt_s,
        handshake_s=m.handshake_s,
        finish_s=pause_s - m.handshake_s - m.final_copy_s - m.resume_s - half_rtt_s,
        resume_s=m.resume_s,
        confirm_s=(m.total_time_s - m.destination_start_s) - half_rtt_s,
        announce_s=0.0 if first_frame != first_frame else first_frame - m.destination_resume_s,
    )
