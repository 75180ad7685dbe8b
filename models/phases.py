"""libvirt's migration protocol v3: five phases, who runs each and what each waits for.

Two windows matter to users and neither is QEMU's downtime-limit:
* the pause window: the source stops its vCPUs -> the destination starts its vCPUs. Both VMs are
  paused throughout; libvirt reports it as the completed job's `downtime`.
* the network outage: the source stops -> the destination port forwards the guest's traffic. With
  802.1Qbg libvirt does not wait for the switch in Finish, so the port may forward after the guest
  resumes; it also waits for QEMU's first self-announce.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from . import elementwise as ew


class Phase(StrEnum):
    BEGIN = "begin"
    PREPARE = "prepare"
    PERFORM = "perform"
    FINISH = "finish"
    CONFIRM = "confirm"


@dataclass(frozen=True)
class PhaseInfo:
    phase: Phase
    host: str
    does: str
    waits_for: str


PHASES: tuple[PhaseInfo, ...] = (
    PhaseInfo(Phase.BEGIN, "source", "builds the domain XML and the migration cookie",
              "nothing remote"),
    PhaseInfo(Phase.PREPARE, "destination", "starts QEMU paused with -incoming; pre-associates ports",
              "the Prepare RPC, QEMU start, the switch's answer to each pre-associate"),
    PhaseInfo(Phase.PERFORM, "source", "pre-copies RAM, stops the guest, sends the rest",
              "the switchover rule, the pre-switchover handshake, the final copy"),
    PhaseInfo(Phase.FINISH, "destination", "associates ports, then starts the vCPUs",
              "the Finish RPC; with 802.1Qbh the switch's answer to each associate"),
    PhaseInfo(Phase.CONFIRM, "source", "kills the source QEMU and disassociates its ports",
              "the Confirm RPC, QEMU teardown"),
)


def pause_window_s(source_stop_s: float, destination_start_s: float) -> float:
    return destination_start_s - source_stop_s


def network_outage_s(source_stop_s: float, destination_start_s: float, port_forwarding_s: float,
                     announce_s: float) -> float:
    """Traffic returns when the destination port forwards and the guest has announced itself.
    Floats or arrays (the fast path)."""
    return ew.maximum(destination_start_s + announce_s, port_forwarding_s) - source_stop_s
