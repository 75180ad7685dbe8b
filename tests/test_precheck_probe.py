"""`pausecast precheck --probe-switch / --measure-link` on the testbed with an 802.1Qbg port (one lldpad per
host, the VDP emulator as the switch): the probes measure what the emulator and the shaped link are set
to, the test VSI is gone afterwards, and the domain is untouched."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

pytestmark = [
    pytest.mark.testbed,
    pytest.mark.skipif(os.geteuid() != 0, reason="the testbed needs root (namespaces, mounts, veth)"),
]

STATE_DIR = Path("/var/lib/pausecast-testbed-probe")
NAME = "probe-guest"
SWITCH_MS = 300.0
POLL_MS = 125.0  # libvirt virnetdevvportprofile.c STATUS_POLL_INTERVL_USEC


@pytest.fixture(scope="module")
def tb():
    from pausecast.executor.testbed.qbg import VdpTestbed
    from pausecast.models.scenario import SwitchSpec

    bed = VdpTestbed(state_dir=STATE_DIR, switch=SwitchSpec(service_time_ms=SWITCH_MS))
    bed.down()
    bed.up()
    try:
        bed.start_guest(NAME, memory_mib=128)
        yield bed
    finally:
        bed.destroy_guest(NAME)
        bed.down()


def _snapshot(dom) -> tuple:
    return (dom.XMLDesc(0), dom.state(), dom.migrateGetMaxDowntime(0), dom.migrateGetMaxSpeed(0),
            dom.jobInfo()[0])


def _precheck(tb, tmp_path: Path, capsys, *flags: str) -> tuple[int, dict, object]:
    from pausecast.cli import main
    from pausecast.models.files import load_scenario

    written = tmp_path / "built.toml"
    code = main(["precheck", NAME, "--testbed", "--state-dir", str(tb.state_dir), "--calc-seconds", "1",
                 "--write-scenario", str(written), "--json", *flags])
    return code, json.loads(capsys.readouterr().out), load_scenario(written)


def test_probe_switch_times_a_test_vsi_and_leaves_nothing_behind(tb, tmp_path, capsys):
    from pausecast.executor.migration.precheck import lldpad_client
    from pausecast.executor.testbed.hosts import SRC
    from pausecast.executor.testbed.qbg import VXLAN_IF

    dom = tb.connect(SRC).lookupByName(NAME)
    before = _snapshot(dom)
    code, report, scenario = _precheck(tb, tmp_path, capsys, "--probe-switch")
    assert code in (0, 1)
    assert _snapshot(dom) == before  # XML, state, migration parameters, no job left behind

    probe = report["switch_probe"]
    assert probe["port"] == VXLAN_IF and probe["instance_uuid"] != tb.instance_id
    a = probe["associate"]
    # the emulator answers 300 ms after the request (plus a few ms of ECP over the veth): the wire sees
    # the reply then, and libvirt's polls (at 0, 125, 250, 375 ms) first see it at ceil(300/125) = 3
    # intervals = 375 ms, on the 4th poll; the next poll would be at 500 ms
    assert SWITCH_MS <= a["raw_ms"] < 3 * POLL_MS
    assert 3 * POLL_MS <= a["observed_ms"] < 4 * POLL_MS and a["polls"] == 4
    assert scenario.switch.service_time_ms == pytest.approx(a["raw_ms"]) == probe["service_time_ms"]
    # lldpad reports the de-associate done at once; the switch's answer comes a service time later
    assert SWITCH_MS <= probe["disassociate"]["raw_ms"] < 3 * POLL_MS

    # the switch saw associate then de-associate of the test VSI on the source's port, both answered
    records = [r for r in tb.switch_records() if r["port"] == SRC]
    print(json.dumps(probe))
    ours = {r["req"] for r in records if r["event"] == "request" and r["vsi"] == probe["instance_uuid"]}
    seen = [(r["event"], r["mode"], r["status"]) for r in records
            if r["event"] in ("request", "response") and r["req"] in ours]
    assert [(e, m) for e, m, _ in seen] == [("request", "associate"), ("response", "associate"),
                                            ("request", "deassociate"), ("response", "deassociate")]
    assert {s for e, _, s in seen if e == "response"} == {"0x40"}
    with lldpad_client("", tb.src.holder_pid) as client:
        held = client.vsis(VXLAN_IF)
    assert __import__("uuid").UUID(probe["instance_uuid"]) not in held


def test_measure_link_reads_a_shaped_link(tb, tmp_path, capsys):
    tb.shape(1000.0)
    try:
        code, report, scenario = _precheck(tb, tmp_path, capsys, "--measure-link")
    finally:
        tb.shape(None)
    assert code in (0, 1)
    link = report["link_measurement"]
    print(f"measured {link['mbit_s']:.0f} Mbit/s over {link['seconds']:.2f} s")
    # tbf passes 1000 Mbit/s of frames; TCP carries 1448 payload bytes per 1514-byte frame, so the payload
    # rate is at most ~956 Mbit/s; the lower bound leaves room for a busy 2-core machine
    assert 800 <= link["mbit_s"] <= 1000
    assert (scenario.link.bandwidth_mbit_s, scenario.link.efficiency) == (pytest.approx(link["mbit_s"]), 1.0)


def test_measure_link_off_the_testbed_is_a_one_line_error(capsys):
    from pausecast.cli import main

    local = "qemu:///system"
    assert main(["precheck", "x", "--src", local, "--dst", local, "--measure-link"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["pausecast: error: --measure-link works on the testbed only (--testbed)"]
