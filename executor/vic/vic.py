"""An emulated Cisco VIC's port profile on one link (PORT_SELF), as enic answers libvirt's 802.1Qbh.

libvirt (virnetdevvportprofile.c, virNetDevVPortProfileOp8021Qbh) sends RTM_SETLINK with
IFLA_PORT_SELF { IFLA_PORT_REQUEST, profile, instance UUID = the VM's, host UUID } and IFLA_VF_MAC, then
reads RTM_GETLINK's IFLA_PORT_SELF/IFLA_PORT_RESPONSE at once and every 125 ms, for up to 10 s, until
it is not IN_PROGRESS. enic (enic_main.c enic_set_vf_port, enic_pp.c) hands the request to the NIC's
firmware, which talks to the fabric interconnect; enic_get_vf_port then reports the request and the
firmware's state (enic_process_get_pp_request): IN_PROGRESS until it is done, SUCCESS or an error.
Until a first request, enic has no port to report (-ENODATA: no IFLA_PORT_SELF at all).

Here the firmware and the fabric are the simulator's switch queue (served.py, models/switch_queue.py):
each request is served for the scenario's service time, behind other tenants' background load.
Modes: answer; refuse (pre-associate and associate answered INSUFFICIENT_RESOURCES, enic's answer to
the firmware's ENOMEM; disassociates succeed); silent (IN_PROGRESS forever). A request that arrives
while an earlier one is served replaces it, as a new IFLA_PORT_REQUEST replaces enic's pp state: the
earlier one's answer is dropped.

`Vic` is the protocol without I/O; serve.py runs it on a UNIX socket for the preloaded shim
(executor/testbed/files/vic_shim.c).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from ...models.scenario import SwitchSpec
from ...models.switch_queue import answers, refuses
from ..vdp.served import ServedPort

# linux/if_link.h: enum { PORT_REQUEST_PREASSOCIATE, ..._RR, ASSOCIATE, DISASSOCIATE }
REQUESTS = {0: "preassociate", 1: "preassociate_rr", 2: "associate", 3: "disassociate"}
# linux/if_link.h: PORT_PROFILE_RESPONSE_*
SUCCESS, IN_PROGRESS, INVALID, BADSTATE, INSUFFICIENT_RESOURCES, ERROR = range(0x100, 0x106)
REFUSAL = INSUFFICIENT_RESOURCES


@dataclass(frozen=True)
class PortRequest:
    """One IFLA_PORT_SELF request as libvirt sent it (hex strings; "" where libvirt sent none)."""

    request: int
    profile: str = ""
    instance_uuid: str = ""
    host_uuid: str = ""
    mac: str = ""


@dataclass(frozen=True)
class _Job:
    request: int  # the log's request number
    port: PortRequest


@dataclass(frozen=True)
class PortStatus:
    """What enic_get_vf_port reports: the last request and the firmware's answer to it so far."""

    port: PortRequest
    response: int
    req: int  # the log's request number


class Vic(ServedPort[_Job]):
    """The VIC's PORT_SELF port. `request` and `status` come from libvirt (through the shim), `advance`
    from the clock; `records` are its log."""

    def __init__(self, spec: SwitchSpec, rng: np.random.Generator) -> None:
        super().__init__(spec, rng)
        self._requests = itertools.count(1)
        self._current: PortStatus | None = None

    def start(self, now_s: float) -> None:
        self._log(now_s, "start", **self.played())
        self._start_background(now_s)

    def request(self, port: PortRequest, now_s: float) -> int:
        """libvirt's RTM_SETLINK: the request's number in the log."""
        if port.request not in REQUESTS:
            raise ValueError(f"IFLA_PORT_REQUEST {port.request}: not one of {sorted(REQUESTS)}")
        self.advance(now_s)
        req = next(self._requests)
        mode = REQUESTS[port.request]
        self._log(now_s, "request", req=req, mode=mode, profile=port.profile, instance=port.instance_uuid,
                  host=port.host_uuid, mac=port.mac)
        self._current = PortStatus(port, IN_PROGRESS, req)
        if not answers(self.spec):
            self._log(now_s, "ignored", req=req, why="silent switch")
        else:
            self._serve(self.queue.arrive(_Job(req, port), now_s), now_s)
            self.advance(now_s)  # a switch that answers in no time has answered before libvirt looks
        return req

    def status(self, now_s: float) -> PortStatus | None:
        """libvirt's RTM_GETLINK: the port's state (None: no request yet, enic's -ENODATA)."""
        self.advance(now_s)
        current = self._current
        if current is not None:
            self._log(now_s, "poll", req=current.req, mode=REQUESTS[current.port.request],
                      response=f"{current.response:#x}")
        return current

    def _answer(self, job: _Job, now_s: float) -> None:
        refused = refuses(self.spec) and REQUESTS[job.port.request] != "disassociate"
        response = REFUSAL if refused else SUCCESS
        replaced = self._current is None or self._current.req != job.request
        self._log(now_s, "response", req=job.request, mode=REQUESTS[job.port.request],
                  response=f"{response:#x}", replaced=replaced)
        if not replaced:
            self._current = PortStatus(job.port, response, job.request)
