"""Issue 6's stuck VSI, recognised from what the executor can see, and said in one line.

lldpad 1.1's station (intel/openlldp qbg/vdp22sm.c) sends each associated VSI's keep-alive every
10 us x 2^rka (10.5 s). When the switch leaves a request or keep-alive unanswered for the response timer,
((1 + 2 x retries) x 10 us x 2^rte + 10 us x 2^rwd) x 1.5 (15.8 s with lldpad's rte 8, 17.4 s with the
testbed's 14), `vdp22st_end` drops the VSI: it marks the record VDP22_DELETE_ME and tells only a client
attached to its control interface, not libvirt, which talks netlink. The record stays, and
`vdp22_modvsi` (qbg/vdp22.c) refuses every later request for that VSI with -ENODEV: libvirt's next
de-associate on that host fails with "No such device", and its next (pre-)associate of the same instance
fails before anything reaches the switch, until lldpad restarts. So a VSI gets stuck 17-28 s after its
switch vanished, and the next migration to that host (or start there) fails.

What each source shows (captured on the testbed; tests/data/stuck_vsi/ holds the lines):

    libvirt's error   internal error: sending of PortProfileRequest failed.  (VIR_ERR_INTERNAL_ERROR,
                      VIR_FROM_NET): lldpad refused the request outright; which errno only the log says
    libvirtd's log    virNetDevVPortProfileOpSetLink:814 : error during virtual port configuration of
                      ifindex 4: No such device
    lldpad's log (-V 7, the testbed's)
                      vdp22st_handle_kato:vx0 timeout keep alive timer for 0x55db87f11900(e9)
                      vdp22st_handle_ackto:vx0 timeout ack timer for 0x55db87f11900(e9) ackreceived:0
                      vdp22st_end:vx0 vsi:0x55db87f11900(e9) flags:0 vsi_mode:3,3 resp_vsi_mode:0
                      ... later, a request for the same VSI:
                      vdpnl_show:IFLA_PORT_INSTANCE_UUID:e9ed2ca1-2e00-42fa-828d-6c15a619dde4
                      vdp22_modvsi:vx0 me:0x55db87f11900 flags:0x2 mode change 4 --> 1
                      vdp22_addreq:vx0 rc:-19

The sources rank: lldpad's log names the stuck record (conclusive); libvirtd's ENODEV is probable
(lldpad also answers ENODEV for a port it runs no VDP on); libvirt's bare message only makes it possible.
`diagnose` uses the best source it is given. Pure: text in, a StuckVsi (or None) out.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass

from .wire import VdpMode

# libvirt virnetdevvportprofile.c virNetDevVPortProfileOpCommon: the request's netlink ack was an error
SEND_FAILED = "sending of PortProfileRequest failed"
# virNetDevVPortProfileOpSetLink reports the ack's errno; ENODEV is what a stuck record answers
_SETLINK_ERROR = re.compile(r"error during virtual port configuration of ifindex \d+: (.+?)\s*$",
                            re.MULTILINE)
ENODEV_TEXT = "No such device"
# include/qbg_vdp22.h enum vsi22_flags
VDP22_DELETE_ME = 0x2
ENODEV = 19
# lldpad -V 7 stamps each line with the time of day; where its log goes through syslog it does not
_STAMP = r"^(?:(?P<t>\d\d:\d\d:\d\d\.\d+) )?.*?"
_START = re.compile(r"bound ctrl iface to ")  # lldpad's first line: an earlier process's records are gone
_INSTANCE = re.compile(_STAMP + r"vdpnl_show:IFLA_PORT_INSTANCE_UUID:(?P<id>[0-9a-f-]{36})")
_NEW = re.compile(_STAMP + r"vdp22_addvsi:\S+ vsip:(?P<vsi>0x[0-9a-f]+)")
_MODIFY = re.compile(_STAMP + r"vdp22_modvsi:(?P<ifname>\S+) me:(?P<vsi>0x[0-9a-f]+) "
                     r"flags:(?P<flags>0x[0-9a-f]+|0) mode change \d+ --> (?P<mode>\d+)")
_ADDREQ = re.compile(_STAMP + r"vdp22_addreq:\S+ rc:(?P<rc>-?\d+)")
_KEEPALIVE = re.compile(_STAMP + r"vdp22st_handle_kato:\S+ timeout keep alive timer for "
                        r"(?P<vsi>0x[0-9a-f]+)\(")
_UNANSWERED = re.compile(_STAMP + r"vdp22st_handle_ackto:\S+ timeout ack timer for "
                         r"(?P<vsi>0x[0-9a-f]+)\(\w+\) ackreceived:0")
_END = re.compile(_STAMP + r"vdp22st_end:(?P<ifname>\S+) vsi:(?P<vsi>0x[0-9a-f]+)\(")


@dataclass(frozen=True)
class Drop:
    """lldpad's station dropping a VSI whose switch did not answer (times on lldpad's clock, "" unstamped)."""

    vsi: str  # lldpad's record (its address): later refusals name it
    interface: str
    t: str
    unanswered: str  # what the switch left unanswered: "keep-alive" | "request"
    sent_t: str = ""


@dataclass(frozen=True)
class Refusal:
    """lldpad refusing a request because the VSI's record is marked for deletion (-ENODEV)."""

    vsi: str
    interface: str
    instance_id: str
    request: str  # the refused VDP mode: "preassociate", "associate", "deassociate"
    t: str


@dataclass(frozen=True)
class StuckVsi:
    """One stuck VSI: where, which, how sure, and (from lldpad's log) when and why it was dropped."""

    host: str
    instance_id: str  # "" when no source named it
    evidence: str  # "lldpad log" | "libvirtd log" | "libvirt error"
    request: str = ""
    interface: str = ""
    drop: Drop | None = None

    @property
    def remedy(self) -> str:
        return f"restart lldpad on {self.host}"

    @property
    def diagnosis(self) -> str:
        """One line: the host, the VSI, the cause and the remedy."""
        vsi = f"VSI {self.instance_id}" if self.instance_id else "the guest's VSI"
        cause = "lldpad dropped it without telling libvirt when its switch stopped answering"
        if self.evidence == "lldpad log":
            if self.drop is not None:
                sent = f" of {self.drop.sent_t}" if self.drop.sent_t else ""
                at = f" at {self.drop.t}" if self.drop.t else ""
                cause = (f"lldpad dropped it{at} without telling libvirt, its switch having left the "
                         f"{self.drop.unanswered}{sent} unanswered")
            port = f" ({self.interface})" if self.interface else ""
            return (f"stuck VSI on {self.host}: {vsi}{port}: {cause}; lldpad refuses the "
                    f"{self.request or 'request'} for it (ENODEV) until restarted: {self.remedy}")
        if self.evidence == "libvirtd log":
            return (f"probably a stuck VSI on {self.host}: lldpad refused the port-profile request for {vsi} "
                    f"with ENODEV, as it does once {cause}: {self.remedy}")
        return (f"possibly a stuck VSI on {self.host}: lldpad refused the port-profile request for {vsi} "
                f"outright (libvirt: {SEND_FAILED}), as it does once {cause} (its log would show "
                f"vdp22_modvsi flags:0x2, rc:-19): {self.remedy}")


class StuckVsiError(RuntimeError):
    """A guest could not start: its host's lldpad refuses the guest's stuck VSI."""

    def __init__(self, fault: StuckVsi) -> None:
        super().__init__(fault.diagnosis)
        self.fault = fault


def qbg_instance_ids(domain_xml: str) -> tuple[str, ...]:
    """The instance ids of a domain's 802.1Qbg ports (libvirt <virtualport type='802.1Qbg'>)."""
    root = ET.fromstring(domain_xml)
    return tuple(params.get("instanceid", "").lower()
                 for port in root.iterfind("./devices/interface/virtualport[@type='802.1Qbg']")
                 if (params := port.find("parameters")) is not None and params.get("instanceid"))


def _lines(text: str) -> list[str]:
    """The lines of the last lldpad process the log shows."""
    lines = text.splitlines()
    starts = [i for i, line in enumerate(lines) if _START.search(line)]
    return lines[starts[-1]:] if starts else lines


def drops(lldpad_log: str) -> dict[str, Drop]:
    """Each VSI record lldpad's station dropped for want of an answer, by record, the latest drop kept."""
    out: dict[str, Drop] = {}
    sent: dict[str, tuple[str, str]] = {}  # record -> what went out last to the switch, and when
    timed_out: set[str] = set()
    for line in _lines(lldpad_log):
        if m := _NEW.search(line) or _MODIFY.search(line):
            sent[m["vsi"]] = ("request", m["t"] or "")
        elif m := _KEEPALIVE.search(line):
            sent[m["vsi"]] = ("keep-alive", m["t"] or "")
        elif m := _UNANSWERED.search(line):
            timed_out.add(m["vsi"])
        elif (m := _END.search(line)) and m["vsi"] in timed_out:
            timed_out.discard(m["vsi"])
            what, sent_t = sent.get(m["vsi"], ("request", ""))
            out[m["vsi"]] = Drop(m["vsi"], m["ifname"], m["t"] or "", what, sent_t)
    return out


def refusals(lldpad_log: str) -> list[Refusal]:
    """Every request lldpad refused because the VSI's record was dropped, in log order."""
    out = []
    instance, pending = "", None
    for line in _lines(lldpad_log):
        if m := _INSTANCE.search(line):
            instance = m["id"]
        elif (m := _MODIFY.search(line)) and int(m["flags"], 16) & VDP22_DELETE_ME:
            pending = m
        elif (m := _ADDREQ.search(line)) and pending is not None:
            if int(m["rc"]) == -ENODEV:
                mode = int(pending["mode"])
                request = VdpMode(mode).name.lower() if mode in VdpMode._value2member_map_ else str(mode)
                out.append(Refusal(pending["vsi"], pending["ifname"], instance, request, pending["t"] or ""))
            pending = None
    return out


def diagnose(host: str, error: str = "", *, daemon_log: str | None = None, lldpad_log: str | None = None,
             lldpad_before: str = "", instance_ids: Sequence[str] = ()) -> StuckVsi | None:
    """Whether `host`'s lldpad refused a request for a stuck VSI during a call. `error`: libvirt's
    message ("" if the call succeeded); `daemon_log`: what that host's libvirtd logged during the call;
    `lldpad_log`: what its lldpad logged during the call, `lldpad_before`: its log before (when and why it
    dropped the VSI); None where a log is not readable. `instance_ids`: the guest's 802.1Qbg VSIs (a
    refusal of another VSI is not this guest's). The best readable source decides."""
    ids = {i.lower() for i in instance_ids}
    named = next(iter(ids)) if len(ids) == 1 else ""
    if lldpad_log is not None:
        refused = [r for r in refusals(lldpad_log) if not ids or r.instance_id in ids]
        if not refused:
            return None
        last = refused[-1]
        return StuckVsi(host, last.instance_id, "lldpad log", last.request, last.interface,
                        drops(lldpad_before + "\n" + lldpad_log).get(last.vsi))
    if daemon_log is not None:
        errnos = _SETLINK_ERROR.findall(daemon_log)
        return StuckVsi(host, named, "libvirtd log") if ENODEV_TEXT in errnos else None
    return StuckVsi(host, named, "libvirt error") if SEND_FAILED in error else None
