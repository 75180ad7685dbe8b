"""The real-host path of `run`, `calibrate`, `validate` and `precheck`, on hosts pausecast did not set
up: two libvirtd daemons configured as an operator configures them (tests/files/operator-hosts.sh,
no pausecast.executor.testbed.hosts), the operator's own domain defined on one of them, and the commands
given nothing but --src/--dst/--domain and the other real-host flags. Root only; under a minute with
TCG. One run at a time: the hosts' names and state dir are fixed.

The commands run in the order an operator would run them, each fixture after the one before, and the
domain moves between the hosts as they go: a plain run there and back, calibrate (ends on op-b), a run
the wrong way (refused), a run back to op-a, validate (ends on op-b), a pre-check on op-b, teardown.
Where the domain is and whether it is persistent come from libvirt (virsh, libvirt-python), figures
from the record files the commands wrote, versions from the daemons; nothing is compared with a clock.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import tomllib
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import pytest

from .operator_hosts import OperatorHosts, tools_missing

pytestmark = [
    pytest.mark.testbed,
    pytest.mark.skipif(os.geteuid() != 0, reason="the operator's hosts need root (namespaces, mounts, veth)"),
]

DOMAIN = "dirty"
MEMORY_MIB = 128
# 32 of the 128 MiB written, rewritten at 1,000 pages/s: at the scenario's 32 MiB/s the first pass takes
# about a second and the later ones re-send a few MiB, so QEMU's normal pages stay well inside RAM
REGION_MIB = 32
RATE_PAGES = 1000
PAGE = 4096
# the region's pages spread evenly over the RAM it may use (all but the first 2 MiB, where the BIOS and
# the kernel are, and the last), so QEMU's walk meets written and zero pages mixed, as in a real VM;
# in the guest's 16.16 fixed point (executor/testbed/files/dirtier.c)
STRIDE_FP = (MEMORY_MIB - 3) * 65536 // REGION_MIB
GUEST_CMDLINE = (f"rate_pages={RATE_PAGES} region_mib={REGION_MIB} stride_fp={STRIDE_FP} scatter=1 "
                 "pm_timer=1 report_ms=1000")
# libvirt's QEMU driver reports an unlimited migration speed as LLONG_MAX bytes/s in MiB/s
# (QEMU_DOMAIN_MIG_BANDWIDTH_MAX)
UNLIMITED_MIB_S = (2**63 - 1) >> 20
README_LOG_FILTERS = "1:qemu.qemu_migration 1:qemu.qemu_monitor_json 1:conf.virdomainjob 1:qemu.qemu_process"
README_LOG_OUTPUTS = "3:file:/var/log/libvirt/libvirtd.log 1:file:/var/log/libvirt/migration.log"


def scenario_toml(*, keep_definitions: bool) -> str:
    persistence = "persistent = true\nundefine_source = true\n" if keep_definitions else ""
    return f"""
name = "operator-hosts"
[vm]
memory_mib = {MEMORY_MIB}
zero_page_fraction = {1 - REGION_MIB / MEMORY_MIB}
[vm.dirty]
rate_mib_s = {RATE_PAGES * PAGE / 2**20}
pattern = "sweep"
[link]
bandwidth_mbit_s = 10000      # the veth between the hosts, unshaped
rtt_ms = 0.05                 # two namespaces on one machine
[migration]
max_downtime_ms = 300
bandwidth_mib_s = 32
timeout_s = 60                # a hung migration fails the test in a minute, not at the 300 s give-up
{persistence}"""


def domain_xml(virt_type: str, kernel: Path, serial_log: Path) -> str:
    return f"""<domain type='{virt_type}'>
  <name>{DOMAIN}</name>
  <memory unit='MiB'>{MEMORY_MIB}</memory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
    <kernel>{kernel}</kernel>
    <cmdline>{GUEST_CMDLINE}</cmdline>
  </os>
  <features>
    <!-- pm_timer=1 paces the guest by the ACPI PM timer, which QEMU only has with ACPI -->
    <acpi/>
  </features>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>destroy</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <!-- append: the destination's QEMU goes on writing where the source's stopped -->
    <serial type='file'><source path='{serial_log}' append='on'/><target port='0'/></serial>
    <controller type='usb' model='none'/>
    <memballoon model='none'/>
  </devices>
</domain>
"""


# ------------------------------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def hosts():
    # bootstrap installs every tool the hosts need: a missing one is a failure, not a reason to skip
    assert not (missing := tools_missing()), f"missing {missing}: run scripts/bootstrap.sh executor"
    ops = OperatorHosts()
    ops.down()  # whatever a crashed run left
    ops.up()
    try:
        yield ops
    finally:
        ops.down()


@dataclass(frozen=True)
class Guest:
    serial_log: Path
    virt_type: str


@pytest.fixture(scope="module")
def guest(hosts):
    from pausecast.executor.testbed.guest_build import build_guest
    from pausecast.executor.testbed.kvm import detect_virt_type

    built = build_guest()
    virt_type, _why = detect_virt_type(built)
    folder = hosts.state_dir / "guest"
    folder.mkdir()
    # the operator's image lives on storage both hosts see; here, beside the hosts' state
    kernel = folder / "dirtier.elf"
    shutil.copy2(built, kernel)
    serial_log = folder / f"{DOMAIN}.serial.log"
    xml = folder / f"{DOMAIN}.xml"
    xml.write_text(domain_xml(virt_type, kernel, serial_log))
    hosts.define_and_start("op-a", xml, DOMAIN, serial_log)
    return Guest(serial_log, virt_type)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("operator")
    (d / "plain.toml").write_text(scenario_toml(keep_definitions=False))
    (d / "s.toml").write_text(scenario_toml(keep_definitions=True))
    return d


@dataclass(frozen=True)
class Cli:
    code: int
    out: str
    err: str

    @property
    def err_lines(self) -> list[str]:
        return [ln for ln in self.err.splitlines() if ln.strip()]

    def __str__(self) -> str:
        return f"exit {self.code}\n--- stdout\n{self.out}\n--- stderr\n{self.err}"


def _cli(*argv: str) -> Cli:
    """pausecast in-process, with its stdout and everything written to stderr: Python's and what C code
    (libvirt's default error handler) writes to fd 2, which an operator's terminal shows too."""
    from pausecast.cli import main

    out, err = io.StringIO(), io.StringIO()
    with tempfile.TemporaryFile() as fd2:
        sys.stderr.flush()
        saved = os.dup(2)
        os.dup2(fd2.fileno(), 2)
        try:
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                try:
                    code = main(list(argv))
                except SystemExit as exc:  # argparse refusing the arguments
                    code = exc.code if isinstance(exc.code, int) else 2
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        fd2.seek(0)
        c_err = fd2.read().decode(errors="replace")
    return Cli(code, out.getvalue(), err.getvalue() + c_err)


def ends(hosts, src: str, dst: str) -> list[str]:
    """The real-host flags for one direction, as an operator gives them."""
    a, b = hosts[src], hosts[dst]
    return ["--src", a.uri, "--dst", b.uri, "--domain", DOMAIN, "--p2p-dst", b.tcp_uri,
            "--migrate-uri", b.migrate_uri,
            "--src-log", str(a.migration_log), "--dst-log", str(b.migration_log)]


def back(hosts, src: str) -> list[str]:
    """How the destination's daemon reaches the source again, for moving the domain back between repeats."""
    return ["--p2p-src", hosts[src].tcp_uri, "--migrate-back-uri", hosts[src].migrate_uri]


def records(results: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(results.glob("runs/*/record.json"))]


def guest_pages(serial_log: Path) -> int:
    """Pages the guest says it has written so far (its last complete report line)."""
    lines = [ln for ln in serial_log.read_text(errors="replace").split("\n")[:-1] if ln.startswith("pcd ms=")]
    return int(lines[-1].split("pages=")[1].split()[0]) if lines else 0


def _dotted(version: int) -> str:
    return f"{version // 1_000_000}.{version // 1000 % 1000}.{version % 1000}"


def only_on(hosts, host: str) -> None:
    """The domain runs on `host`, persistently defined there, and no other host has it at all."""
    assert hosts.where(DOMAIN) == {host: "running"}
    assert hosts.lookup(host, DOMAIN).isPersistent()


# ------------------------------------------------------------------------------------------ the hosts


def test_each_host_is_a_libvirt_host_of_its_own(hosts):
    names = {name: hosts.connect(name).getHostname() for name in hosts.hosts}
    assert names == {"op-a": "op-a", "op-b": "op-b"}
    uuids = {ET.fromstring(hosts.connect(name).getCapabilities()).findtext("host/uuid")
             for name in hosts.hosts}
    assert len(uuids) == 2  # libvirt refuses to migrate to a host with its own UUID
    for name in hosts.hosts:
        # the daemon's own account of its logging: the README's settings, exactly
        filters = hosts.virt_admin(name, "daemon-log-filters").split(":", 1)[1].replace("*", "").split()
        assert " ".join(filters) == README_LOG_FILTERS
        assert hosts.virt_admin(name, "daemon-log-outputs").split(":", 1)[1].strip() == README_LOG_OUTPUTS
    # peer-to-peer traffic crosses the veth: each host reaches the other's address over it
    for a, b in (("op-a", "op-b"), ("op-b", "op-a")):
        route = subprocess.run(["ip", "-n", a, "route", "get", hosts[b].address], capture_output=True,
                               text=True, check=True).stdout
        assert f"dev {a}0 " in route, route


def test_the_operators_domain_runs_persistent_on_op_a(hosts, guest):
    only_on(hosts, "op-a")
    root = ET.fromstring(hosts.lookup("op-a", DOMAIN).XMLDesc(0))
    assert root.get("type") == guest.virt_type
    assert root.find("devices/interface") is None and root.find("devices/disk") is None
    assert guest_pages(guest.serial_log) > 0


# ---------------------------------------------------------------------------- a plain run, today's path


def test_a_plain_run_leaves_the_domain_transient_on_the_destination_and_comes_back(hosts, guest, files,
                                                                                  tmp_path):
    """Without the persistence keys, as `virsh migrate --live` does: the domain arrives transient and the
    source keeps its (now inactive) definition; running it back makes the definition live again."""
    there = _cli("run", str(files / "plain.toml"), *ends(hosts, "op-a", "op-b"), "--results", str(tmp_path))
    assert there.code == 0, there
    assert hosts.where(DOMAIN) == {"op-a": "shut off", "op-b": "running"}
    assert not hosts.lookup("op-b", DOMAIN).isPersistent()
    [record] = records(tmp_path)
    assert record["failure"] == "" and record["engine"] == "executor"
    # --src-log/--dst-log were the daemons' migration.log: the phases come from them
    assert record["extra"]["phases_from"] == "daemon logs"
    assert record["begin_start_s"] < record["prepare_start_s"] < record["perform_start_s"]
    assert record["perform_start_s"] < record["finish_start_s"] < record["confirm_start_s"]
    # the source kept the domain, so its completed job's statistics: every written page went at least once
    assert record["extra"]["memory_normal_pages"] * PAGE >= REGION_MIB * 2**20
    written = guest_pages(guest.serial_log)

    home = _cli("run", str(files / "plain.toml"), *ends(hosts, "op-b", "op-a"), "--results", str(tmp_path))
    assert home.code == 0, home
    only_on(hosts, "op-a")
    assert len(records(tmp_path)) == 2
    assert guest_pages(guest.serial_log) > written  # the same guest, still writing


# --------------------------------------------------------------------------------------- calibrate


@dataclass(frozen=True)
class Calibration:
    cli: Cli
    profile: Path
    results: Path
    # what the guest had written before
    pages_before: int


@pytest.fixture(scope="module")
def calibrated(hosts, guest, files, tmp_path_factory):
    only_on(hosts, "op-a")
    out = tmp_path_factory.mktemp("calibrate")
    pages = guest_pages(guest.serial_log)
    cli = _cli("calibrate", "--repeat", "3", "--scenario", str(files / "s.toml"), "--out",
               str(out / "profile.toml"), "--results", str(out / "results"),
               *ends(hosts, "op-a", "op-b"), *back(hosts, "op-a"))
    return Calibration(cli, out / "profile.toml", out / "results", pages)


def test_calibrate_writes_overheads_measured_on_the_hosts(calibrated):
    from pausecast.models.overheads import OVERHEAD_FIELDS

    cli = calibrated.cli
    assert cli.code == 0, cli
    costs = tomllib.loads(calibrated.profile.read_text())["overheads"]
    assert set(costs) == set(OVERHEAD_FIELDS)
    assert all(math.isfinite(v) and v >= 0 for v in costs.values()), costs


def test_calibrates_measured_table_describes_the_measured_domain(hosts, calibrated):
    cli = calibrated.cli
    assert cli.code == 0, cli
    measured = tomllib.loads(calibrated.profile.read_text())["measured"]
    assert measured["domain"] == DOMAIN
    dom = hosts.lookup("op-b", DOMAIN)
    assert measured["memory_mib"] == MEMORY_MIB == dom.maxMemory() // 1024
    normal, constant = measured["memory_normal_pages"], measured["memory_constant_pages"]
    assert normal > 0 and constant > 0
    # every written page crosses as a normal page at least once; the few re-sent cannot fill the RAM
    assert REGION_MIB * 2**20 <= normal * PAGE <= MEMORY_MIB * 2**20, measured
    assert measured["throughput_mib_s"] > 0
    assert measured["mode"] == "p2p"
    for role, host in (("source", "op-a"), ("destination", "op-b")):
        conn = hosts.connect(host)
        assert _dotted(conn.getLibVersion()) in str(measured["versions"][role]["libvirt"])
        assert _dotted(conn.getVersion()) in str(measured["versions"][role]["qemu"])
    assert measured["runs"] == 3


def went_from_a_to_b(record: dict) -> bool:
    direction = record["extra"]["direction"]
    return direction.index("op-a") < direction.index("->") < direction.index("op-b")


def says_it_is_on(out: str, hosts, host: str) -> bool:
    """A line of the output that names the domain and `host` and no other host: where it is now."""
    others = [h.uri for name, h in hosts.hosts.items() if name != host]
    return any(DOMAIN in ln and hosts[host].uri in ln and not any(o in ln for o in others)
               for ln in out.splitlines())


def test_calibrate_records_three_runs_each_from_src_to_dst(calibrated):
    cli = calibrated.cli
    assert cli.code == 0, cli
    runs = records(calibrated.results)
    assert len(runs) == 3  # the moves back are not measured runs
    assert all(r["failure"] == "" for r in runs)
    assert all(went_from_a_to_b(r) for r in runs), [r["extra"]["direction"] for r in runs]


def test_calibrate_leaves_the_domain_persistent_on_the_destination_and_says_so(hosts, guest, calibrated):
    cli = calibrated.cli
    assert cli.code == 0, cli
    only_on(hosts, "op-b")
    assert says_it_is_on(cli.out, hosts, "op-b"), cli.out
    assert guest_pages(guest.serial_log) > calibrated.pages_before  # six moves later, still writing


# ------------------------------------------------------------------------- run, where the domain is


@pytest.fixture(scope="module")
def wrong_way(hosts, calibrated, files, tmp_path_factory):
    return _cli("run", str(files / "s.toml"), *ends(hosts, "op-a", "op-b"),
                "--results", str(tmp_path_factory.mktemp("wrong-way")))


def test_a_run_from_where_the_domain_is_not_says_where_it_is(hosts, wrong_way):
    assert wrong_way.code == 3, wrong_way
    assert len(wrong_way.err_lines) == 1, wrong_way
    assert hosts["op-b"].uri in wrong_way.err_lines[0]
    assert "Traceback" not in wrong_way.err
    only_on(hosts, "op-b")


@pytest.fixture(scope="module")
def moved_back(hosts, wrong_way, files, tmp_path_factory):
    results = tmp_path_factory.mktemp("moved-back")
    cli = _cli("run", str(files / "s.toml"), *ends(hosts, "op-b", "op-a"), "--results", str(results))
    return cli, results


def test_a_run_with_the_flags_swapped_moves_it_back(hosts, guest, moved_back):
    cli, results = moved_back
    assert cli.code == 0, cli
    [record] = records(results)
    assert record["failure"] == ""
    only_on(hosts, "op-a")


# ---------------------------------------------------------------------------------------- validate


@pytest.fixture(scope="module")
def validated(hosts, moved_back, calibrated, files, tmp_path_factory):
    only_on(hosts, "op-a")
    results = tmp_path_factory.mktemp("validate")
    cli = _cli("validate", str(files / "s.toml"), "--repeat", "2", "--overheads", str(calibrated.profile),
               "--results", str(results), *ends(hosts, "op-a", "op-b"), *back(hosts, "op-a"))
    return cli, results


def test_validate_prints_prediction_and_measurement_side_by_side(validated):
    from pausecast.analysis.validation import FIGURES

    cli, results = validated
    assert cli.code in (0, 1), cli  # the accuracy target met or not: either is a verdict
    assert "nan%" not in cli.out.lower()
    runs = records(results)
    assert len(runs) == 2 and all(r["failure"] == "" for r in runs)
    assert all(went_from_a_to_b(r) for r in runs), [r["extra"]["direction"] for r in runs]
    table = cli.out.splitlines()
    for _, label, unit, _ in FIGURES:
        assert any(ln.strip().startswith(f"{label} ({unit})") for ln in table), (label, cli.out)
    # the measured column is the median of the runs the command recorded
    row = next(ln for ln in table if ln.strip().startswith("total time (s)"))
    measured = float(row.split("total time (s)")[1].split()[1])
    assert measured == pytest.approx(statistics.median(r["total_time_s"] for r in runs), rel=1e-3)


def test_validate_leaves_the_domain_on_the_destination_and_says_so(hosts, validated):
    cli, _ = validated
    assert cli.code in (0, 1), cli
    only_on(hosts, "op-b")
    assert says_it_is_on(cli.out, hosts, "op-b"), cli.out


# ---------------------------------------------------------------------------------------- precheck


@pytest.fixture(scope="module")
def prechecked(hosts, validated, files, tmp_path_factory):
    only_on(hosts, "op-b")
    dom = hosts.lookup("op-b", DOMAIN)

    def look():
        return (dom.XMLDesc(0), dom.state(), dom.isPersistent(), dom.migrateGetMaxSpeed(0),
                dom.migrateGetMaxDowntime(0))

    before = look()
    written = tmp_path_factory.mktemp("precheck") / "built.toml"
    cli = _cli("precheck", DOMAIN, "--src", hosts["op-b"].uri, "--dst", hosts["op-a"].uri,
               "--scenario", str(files / "s.toml"), "--bandwidth", "32", "--max-downtime", "300",
               "--calc-seconds", "2", "--json", "--write-scenario", str(written))
    return cli, before, look(), written


def test_precheck_takes_the_operators_bandwidth_over_the_domains_own(prechecked):
    from pausecast.models.files import load_scenario

    cli, before, _, written = prechecked
    assert cli.code in (0, 1), cli
    report = json.loads(cli.out)
    assert report["verdict"] == ("GO" if cli.code == 0 else "NO-GO")
    # the domain's own speed is libvirt's unlimited, so 32 can only have come from the flag
    assert before[3] >= UNLIMITED_MIB_S
    scenario = load_scenario(written)
    assert report["record"]["scenario_id"] == scenario.scenario_id
    assert scenario.migration.bandwidth_mib_s == 32
    assert scenario.migration.max_downtime_ms == 300
    assert report["sources"]["migration.bandwidth_mib_s"] == "--bandwidth"
    assert report["sources"]["migration.max_downtime_ms"] == "--max-downtime"


def test_precheck_changes_nothing_on_the_domain(hosts, prechecked):
    cli, before, after, _ = prechecked
    assert cli.code in (0, 1), cli
    assert after == before
    only_on(hosts, "op-b")


# ---------------------------------------------------------------------------------------- teardown


def test_teardown_leaves_nothing_behind(hosts, guest):
    hosts.where(DOMAIN)  # notes the QEMU running now, whichever host it is on
    assert any("QEMU" in what for _, what in hosts.seen.values())
    hosts.down()
    left = hosts.leftovers()
    assert left == {k: [] for k in left}, left
