"""The stuck-VSI classifier on what the real fault left behind: lldpad's and libvirtd's own lines, captured on
the testbed (tests/data/stuck_vsi/README.md says how)."""

import re
from pathlib import Path

import pytest

from pausecast.executor.migration.daemon_log import LogTail
from pausecast.executor.migration.measure import Observations, failure_text
from pausecast.executor.migration.migrate import stuck_vsi_after
from pausecast.executor.testbed.qbg import interface_xml
from pausecast.executor.vdp.faults import StuckVsi, StuckVsiError, diagnose, drops, qbg_instance_ids, refusals

from .conftest import make

DATA = Path(__file__).resolve().parent / "data" / "stuck_vsi"
STUCK = (DATA / "lldpad-station-stuck.log").read_text()
NORMAL = (DATA / "lldpad-station-normal.log").read_text()
DAEMON_STUCK = (DATA / "libvirtd-stuck.log").read_text()
DAEMON_NORMAL = (DATA / "libvirtd-normal-start.log").read_text()
VSI = "e9ed2ca1-2e00-42fa-828d-6c15a619dde4"  # the guest's instance id in the capture
RECORD = "0x55db87f11900"  # lldpad's record of it
# what libvirt 9.0's client said, for the migration and for a guest start alike
LIBVIRT_ERROR = "internal error: sending of PortProfileRequest failed."
# lldpad's first line at start, as the capture's process logged it
LLDPAD_START = "17:28:41.523555 bound ctrl iface to /com/intel/lldpad\n"


def seconds(stamp: str) -> float:
    hours, minutes, secs = stamp.split(":")
    return int(hours) * 3600 + int(minutes) * 60 + float(secs)


def test_the_drop_is_found_with_the_keepalive_the_switch_left_unanswered():
    (drop,) = drops(STUCK).values()
    assert (drop.vsi, drop.interface, drop.t, drop.unanswered, drop.sent_t) == (
        RECORD, "vx0", "17:29:10.604198", "keep-alive", "17:28:53.154847")
    # lldpad's response timer with the testbed's timers (rte 14, retries 3, rwd 20; qbg/vdp22sm.c
    # vdp22_timeout): ((1 + 2 x 3) x 10 us x 2^14 + 10 us x 2^20) x 1.5 = 17.448960 s, which lldpad's
    # own line shows ("start ack timer ... [17,448960]"); its event loop fires it a little late, never early
    timer_s = ((1 + 2 * 3) * 10e-6 * 2**14 + 10e-6 * 2**20) * 1.5
    assert "start ack timer for 0x55db87f11900(e9) [17,448960]" in STUCK
    assert 0.0 <= seconds(drop.t) - seconds(drop.sent_t) - timer_s < 0.01


def test_a_switch_that_never_answered_leaves_the_vsi_stuck_too():
    silent = (DATA / "lldpad-station-silent-switch.log").read_text()
    (drop,) = drops(silent).values()
    # Prepare's pre-associate went unanswered: dropped one response timer (17.449 s) after it went out
    assert (drop.vsi, drop.unanswered, drop.sent_t, drop.t) == (
        "0x556314edda00", "request", "18:02:49.632248", "18:03:07.082659")
    fault = diagnose("pc-dst", LIBVIRT_ERROR, lldpad_log=silent)
    assert fault is not None
    assert (fault.instance_id, fault.request) == ("87063026-2c43-4021-89f1-02da4de3d8ce", "preassociate")
    assert "its switch having left the request of 18:02:49.632248 unanswered" in fault.diagnosis


def test_a_record_dropped_again_keeps_its_latest_drop():
    # the capture twice over, as one process would log the same record's second life and drop
    twice = STUCK + STUCK.replace("17:29:10.604198 vdp22st_end", "17:31:10.604198 vdp22st_end")
    (drop,) = drops(twice).values()
    assert drop.t == "17:31:10.604198"
    assert len(refusals(twice)) == 4


def test_both_refusals_of_the_dropped_record_are_found_in_order():
    refused = refusals(STUCK)
    # the guest's destroy (de-associate, mode 4) then the migration's Prepare (pre-associate, mode 1)
    assert [(r.vsi, r.interface, r.instance_id, r.request, r.t) for r in refused] == [
        (RECORD, "vx0", VSI, "deassociate", "17:29:15.460443"),
        (RECORD, "vx0", VSI, "preassociate", "17:29:18.056310")]


def test_a_healthy_station_shows_no_drop_and_no_refusal():
    # it holds an associate, a keep-alive the switch answered and a de-associate that ended the VSI
    assert "vdp22st_end:vx0" in NORMAL and "vdp22st_handle_kato:vx0" in NORMAL
    assert drops(NORMAL) == {} and refusals(NORMAL) == []
    assert diagnose("pc-src", LIBVIRT_ERROR, lldpad_log=NORMAL) is None


def test_lldpads_log_gives_the_full_diagnosis():
    fault = diagnose("pc-dst", LIBVIRT_ERROR, daemon_log=DAEMON_STUCK, lldpad_log=STUCK, instance_ids=[VSI])
    assert fault is not None
    assert (fault.host, fault.instance_id, fault.evidence, fault.request, fault.interface) == (
        "pc-dst", VSI, "lldpad log", "preassociate", "vx0")
    assert fault.drop == drops(STUCK)[RECORD]
    assert fault.diagnosis == (
        f"stuck VSI on pc-dst: VSI {VSI} (vx0): lldpad dropped it at 17:29:10.604198 without telling "
        "libvirt, its switch having left the keep-alive of 17:28:53.154847 unanswered; lldpad refuses the "
        "preassociate for it (ENODEV) until restarted: restart lldpad on pc-dst")


def test_only_the_calls_part_of_lldpads_log_decides_and_the_earlier_part_dates_the_drop():
    lines = STUCK.splitlines(keepends=True)
    call = next(i for i, line in enumerate(lines) if line.startswith("17:29:18"))  # the migration's Prepare
    before, during = "".join(lines[:call]), "".join(lines[call:])
    fault = diagnose("pc-dst", LIBVIRT_ERROR, lldpad_log=during, lldpad_before=before, instance_ids=[VSI])
    assert fault is not None and fault.request == "preassociate" and fault.drop is not None
    assert fault.drop.t == "17:29:10.604198"
    # the call's part alone still convicts the record, without saying when it was dropped
    alone = diagnose("pc-dst", LIBVIRT_ERROR, lldpad_log=during, instance_ids=[VSI])
    assert alone is not None and alone.drop is None and "restart lldpad on pc-dst" in alone.diagnosis
    # a call during which lldpad refused nothing was not refused for a stuck VSI, whatever came before
    assert diagnose("pc-dst", LIBVIRT_ERROR, lldpad_log="", lldpad_before=STUCK) is None


def test_a_refusal_of_another_guests_vsi_is_not_this_guests():
    assert diagnose("pc-dst", LIBVIRT_ERROR, lldpad_log=STUCK,
                    instance_ids=["00000000-0000-0000-0000-000000000001"]) is None
    # ids compare as UUIDs do, whatever their case
    assert diagnose("pc-dst", LIBVIRT_ERROR, lldpad_log=STUCK, instance_ids=[VSI.upper()]) is not None


def test_a_restarted_lldpad_has_forgotten_the_stuck_record():
    assert refusals(STUCK + LLDPAD_START) == [] and drops(STUCK + LLDPAD_START) == {}
    # what a fresh process logs after its start line is what counts
    assert len(refusals(LLDPAD_START + STUCK)) == 2


def test_syslog_lines_without_lldpads_stamps_are_read_too():
    syslog = re.sub(r"^\d\d:\d\d:\d\d\.\d+ ", "Nov 26 17:29:10 pc-dst lldpad[2210]: ", STUCK,
                    flags=re.MULTILINE)
    assert [(r.request, r.t) for r in refusals(syslog)] == [("deassociate", ""), ("preassociate", "")]
    (drop,) = drops(syslog).values()
    assert (drop.t, drop.unanswered) == ("", "keep-alive")
    fault = diagnose("pc-dst", LIBVIRT_ERROR, lldpad_log=syslog)
    assert fault is not None and " at " not in fault.diagnosis.split(";")[0]


def test_libvirtds_enodev_makes_it_probable():
    fault = diagnose("pc-dst", LIBVIRT_ERROR, daemon_log=DAEMON_STUCK, instance_ids=[VSI])
    assert fault == StuckVsi("pc-dst", VSI, "libvirtd log")
    assert fault.diagnosis.startswith(f"probably a stuck VSI on pc-dst: lldpad refused the port-profile "
                                      f"request for VSI {VSI} with ENODEV")
    assert fault.diagnosis.endswith("restart lldpad on pc-dst")
    # the same libvirtd also logs "No such device" for things that are no port-profile request
    assert "No such device" in DAEMON_NORMAL
    assert diagnose("pc-dst", "", daemon_log=DAEMON_NORMAL, instance_ids=[VSI]) is None


def test_another_errno_from_lldpad_is_not_a_stuck_vsi():
    # the captured line with lldpad's answer before it has the switch's EVB timers (vdp22_request:
    # -EPROTONOSUPPORT), as libvirt's strerror prints it
    refused_early = DAEMON_STUCK.replace("No such device", "Protocol not supported")
    assert diagnose("pc-dst", LIBVIRT_ERROR, daemon_log=refused_early, instance_ids=[VSI]) is None


def test_libvirts_bare_message_makes_it_possible_only():
    fault = diagnose("node7", LIBVIRT_ERROR, instance_ids=[VSI])
    assert fault == StuckVsi("node7", VSI, "libvirt error")
    assert fault.diagnosis.startswith(f"possibly a stuck VSI on node7: lldpad refused the port-profile "
                                      f"request for VSI {VSI} outright")
    aborted = "operation aborted: migration job: canceled by client"
    assert diagnose("node7", aborted, instance_ids=[VSI]) is None
    # a call that succeeded, with nothing readable, says nothing
    assert diagnose("node7", "", instance_ids=[VSI]) is None


def test_every_diagnosis_is_one_line_naming_host_vsi_and_remedy():
    faults = [diagnose("pc-dst", LIBVIRT_ERROR, lldpad_log=STUCK, instance_ids=[VSI]),
              diagnose("pc-dst", LIBVIRT_ERROR, daemon_log=DAEMON_STUCK, instance_ids=[VSI]),
              diagnose("pc-dst", LIBVIRT_ERROR, instance_ids=[VSI])]
    for fault in faults:
        assert fault is not None
        text = fault.diagnosis
        assert "\n" not in text and "pc-dst" in text and VSI in text
        assert text.endswith("restart lldpad on pc-dst")
    with pytest.raises(StuckVsiError, match="restart lldpad on pc-dst") as raised:
        raise StuckVsiError(faults[0])
    assert raised.value.fault is faults[0]


def test_instance_ids_are_read_from_the_domains_8021qbg_ports():
    xml = (f"<domain><devices>{interface_xml(VSI.upper())}"
           "<interface type='network'><source network='default'/></interface>"
           "<interface type='direct'><source dev='eth0' mode='vepa'/><virtualport type='802.1Qbh'>"
           "<parameters profileid='finance'/></virtualport></interface></devices></domain>")
    assert qbg_instance_ids(xml) == (VSI,)
    assert qbg_instance_ids("<domain><devices/></domain>") == ()


def test_the_executor_reads_both_logs_around_a_call_and_reports_the_diagnosis_as_the_failure(tmp_path):
    lines = STUCK.splitlines(keepends=True)
    call = next(i for i, line in enumerate(lines) if line.startswith("17:29:18"))
    lldpad_log, daemon_log = tmp_path / "lldpad.log", tmp_path / "migration.log"
    lldpad_log.write_text("".join(lines[:call]))
    daemon_log.write_text("")
    lldpad, daemon = LogTail(lldpad_log), LogTail(daemon_log)
    with lldpad_log.open("a") as fh:  # what the call made each daemon log
        fh.write("".join(lines[call:]))
    daemon_log.write_text(DAEMON_STUCK)
    fault = stuck_vsi_after("pc-dst", LIBVIRT_ERROR, daemon, lldpad, (VSI,))
    assert fault is not None and fault.evidence == "lldpad log" and fault.drop is not None
    # no 802.1Qbg port: nothing to diagnose
    assert stuck_vsi_after("pc-dst", LIBVIRT_ERROR, daemon, lldpad, ()) is None
    # lldpad's log not readable here: libvirtd's decides
    assert stuck_vsi_after("pc-dst", LIBVIRT_ERROR, daemon, LogTail(None), (VSI,)).evidence == "libvirtd log"

    obs = Observations(scenario=make(), mode="p2p", t0_s=0.0, t_end_s=1.0, error=LIBVIRT_ERROR, error_code=1,
                       error_domain=11, destination_reachable=True, port_fault=fault.diagnosis)
    assert failure_text(obs) == fault.diagnosis
    # after a successful call the same diagnosis (the source refusing Confirm's de-associate) is no failure
    assert failure_text(Observations(scenario=make(), mode="p2p", t0_s=0.0, t_end_s=1.0,
                                     port_fault=fault.diagnosis)) == ""
