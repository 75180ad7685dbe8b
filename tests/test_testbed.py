"""Real-component tests of the local two-host testbed: real namespaces, veth, libvirtd, QEMU and the
test guest, and real live migrations between the two hosts. Root only; about a minute in all."""

from __future__ import annotations

import os
import statistics
import threading
import time
from pathlib import Path

import pytest

pytestmark = [
    pytest.mark.testbed,
    pytest.mark.skipif(os.geteuid() != 0, reason="the testbed needs root (namespaces, mounts, veth)"),
]

STATE_DIR = Path("/var/lib/pausecast-testbed-pytest")
REGION_MIB = 64
RATE_PAGES = 5000
BANDWIDTH_MIB_S = 32  # QEMU's cap for the live phase: a 64 MiB region takes a few seconds
LINK_MBIT_S = 800  # tbf on the veth: the final copy runs at link speed


@pytest.fixture(scope="module")
def tb():
    from pausecast.executor.testbed.hosts import Testbed

    bed = Testbed(state_dir=STATE_DIR, bandwidth_mbit_s=LINK_MBIT_S)
    bed.down()  # the remains of a crashed run, if any
    bed.up()
    yield bed
    bed.down()


def _migrate_watching(tb, dom, start):
    """Run start() (a blocking libvirt migration call) in a thread while sampling the source's job
    stats and the guest's progress; return (result or exception, samples)."""
    import libvirt

    from pausecast.executor.testbed.guest_domain import read_progress

    src_host = dom.connect().getHostname()
    watcher = libvirt.open(tb.host(src_host).uri).lookupByUUID(dom.UUID())
    out: dict = {}

    def run():
        try:
            out["result"] = start()
        except libvirt.libvirtError as e:
            out["error"] = e

    th = threading.Thread(target=run)
    samples = []
    th.start()
    while th.is_alive():
        try:
            js = watcher.jobStats()
        except libvirt.libvirtError:
            js = {}
        p = read_progress(tb.serial_log(dom.name()))
        if p:
            samples.append((time.monotonic(), js, p[-1]))
        time.sleep(0.2)
    th.join()
    watcher.connect().close()
    return out, samples


@pytest.fixture(scope="module")
def p2p_run(tb):
    """One real peer-to-peer live migration pc-src -> pc-dst of a 128 MiB guest dirtying 5000 pages/s."""
    import libvirt

    from pausecast.executor.testbed.guest_domain import DirtySpec

    dom = tb.start_guest("mig1", memory_mib=128,
                         dirty=DirtySpec.constant(RATE_PAGES, REGION_MIB, report_ms=100))
    time.sleep(1.0)
    dom.migrateSetMaxDowntime(300)
    params = {libvirt.VIR_MIGRATE_PARAM_BANDWIDTH: BANDWIDTH_MIB_S}
    flags = libvirt.VIR_MIGRATE_LIVE | libvirt.VIR_MIGRATE_PEER2PEER
    out, samples = _migrate_watching(tb, dom, lambda: dom.migrateToURI3(tb.dst.tcp_uri, params, flags))
    completed = dom.jobStats(libvirt.VIR_DOMAIN_JOB_STATS_COMPLETED)
    return {"dom": dom, "out": out, "samples": samples, "completed": completed}


def test_up_gives_two_distinct_hosts(tb):
    st = tb.status()
    assert st["up"] is True
    src, dst = st["hosts"]["pc-src"], st["hosts"]["pc-dst"]
    assert src["host_uuid"] != dst["host_uuid"]
    assert (src["address"], dst["address"]) == ("10.213.0.1", "10.213.0.2")
    assert tb.connect("pc-src").getHostname() == "pc-src"
    assert tb.connect("pc-dst").getHostname() == "pc-dst"
    for h in (src, dst):
        assert "tbf" in h["qdisc"] and "800Mbit" in h["qdisc"]
    # Nothing of the testbed is in the root namespace's network.
    assert not Path("/sys/class/net/pc-src0").exists()
    assert st["virt_type"] in ("kvm", "qemu")


def test_p2p_migration_really_moves_the_guest(tb, p2p_run):
    import libvirt

    from pausecast.executor.testbed.guest_domain import guest_faulted, read_progress

    assert "error" not in p2p_run["out"], p2p_run["out"].get("error")
    dom = p2p_run["dom"]
    assert not dom.isActive()
    assert dom.state()[0] == libvirt.VIR_DOMAIN_SHUTOFF
    assert dom.state()[1] == libvirt.VIR_DOMAIN_SHUTOFF_MIGRATED
    moved = tb.connect("pc-dst").lookupByName("mig1")
    assert moved.isActive() and moved.state()[0] == libvirt.VIR_DOMAIN_RUNNING
    assert tb.status()["hosts"]["pc-dst"]["domains"] == {"mig1": "running"}

    # The guest keeps running on the destination: its own clock and page counter advance.
    before = read_progress(tb.serial_log("mig1"))[-1]
    time.sleep(1.0)
    after = read_progress(tb.serial_log("mig1"))[-1]
    assert after.ms >= before.ms + 500
    assert after.pages > before.pages + RATE_PAGES // 4
    assert not guest_faulted(tb.serial_log("mig1"))


def test_completed_job_stats_are_plausible(p2p_run):
    js = p2p_run["completed"]
    assert js["type"] == 3  # VIR_DOMAIN_JOB_COMPLETED
    assert js["operation"] == 5  # VIR_DOMAIN_JOB_OPERATION_MIGRATION_OUT
    assert js["memory_iteration"] >= 2
    assert 0 < js["downtime"] < 3000
    assert js["memory_total"] >= 128 * 2**20 and js["memory_total"] < 129 * 2**20  # RAM + QEMU's ROMs
    # Everything non-zero went at least once; the rest were zero pages.
    assert js["memory_processed"] >= REGION_MIB * 2**20
    assert js["memory_constant"] > 0
    # The live phase is capped at 32 MiB/s, so it cannot have been faster than region / cap.
    assert js["time_elapsed"] >= REGION_MIB / BANDWIDTH_MIB_S * 1000 * 0.9
    assert js["memory_bps"] <= BANDWIDTH_MIB_S * 2**20 * 1.15


def test_libvirt_dirty_rate_matches_the_guest(p2p_run):
    """QEMU's dirty-page rate (libvirt memory_dirty_rate) against what the guest actually wrote per
    second of host time over the same live phase. A linear sweep of 5000 pages/s over 16384 pages
    rewrites each page every ~3.3 s, longer than QEMU's ~1 s rate window, so distinct == written."""
    from pausecast.executor.testbed.guest_domain import host_rate

    samples = p2p_run["samples"]
    live = [(t, p) for t, js, p in samples if js.get("type") == 2 and js.get("memory_iteration", 0) >= 1]
    assert len(live) >= 5, "live phase too short to compare rates"
    guest = host_rate(live)
    assert guest > 0.6 * RATE_PAGES, f"guest starved: {guest:.0f} pages/s"
    # QEMU updates the rate at bitmap syncs >= 1 s apart; each value shows up in several samples.
    rates = sorted({js["memory_dirty_rate"] for _, js, _ in samples if js.get("memory_dirty_rate")})
    assert rates, "QEMU reported no dirty rate"
    qemu = statistics.median(rates)
    assert abs(qemu - guest) / guest < 0.15, f"QEMU {rates} vs guest {guest:.0f} pages/s"


def test_managed_direct_migration_back(tb, p2p_run):
    import libvirt

    moved = tb.connect("pc-dst").lookupByName("mig1")
    moved.migrateSetMaxDowntime(300)
    params = {libvirt.VIR_MIGRATE_PARAM_BANDWIDTH: 64}
    back = moved.migrate3(tb.connect("pc-src"), params, libvirt.VIR_MIGRATE_LIVE)
    assert back.isActive()
    assert tb.connect("pc-src").lookupByName("mig1").state()[0] == libvirt.VIR_DOMAIN_RUNNING
    assert [d.name() for d in tb.connect("pc-dst").listAllDomains()] == []
    js = back.jobStats(libvirt.VIR_DOMAIN_JOB_STATS_COMPLETED)
    assert js["memory_iteration"] >= 2 and js["downtime"] > 0


def test_aborted_migration_leaves_source_running(tb):
    import libvirt

    from pausecast.executor.testbed.guest_domain import DirtySpec, read_progress

    dirty = DirtySpec.constant(RATE_PAGES, REGION_MIB, report_ms=100)
    dom = tb.start_guest("abort1", memory_mib=128, dirty=dirty)
    params = {libvirt.VIR_MIGRATE_PARAM_BANDWIDTH: 8}  # 8 s for the first pass: time to abort
    flags = libvirt.VIR_MIGRATE_LIVE | libvirt.VIR_MIGRATE_PEER2PEER

    def abort_soon():
        time.sleep(1.5)
        dom.abortJob()

    threading.Thread(target=abort_soon).start()
    out, _ = _migrate_watching(tb, dom, lambda: dom.migrateToURI3(tb.dst.tcp_uri, params, flags))
    assert "error" in out, "the migration should have been aborted"
    assert dom.isActive() and dom.state()[0] == libvirt.VIR_DOMAIN_RUNNING
    assert "abort1" not in [d.name() for d in tb.connect("pc-dst").listAllDomains()]
    before = read_progress(tb.serial_log("abort1"))[-1]
    time.sleep(1.0)
    after = read_progress(tb.serial_log("abort1"))[-1]
    assert after.pages > before.pages, "the source VM stopped running after the failed migration"
    tb.destroy_guest("abort1")


def test_down_leaves_nothing(tb):
    from pausecast.executor.testbed.procs import ns_inode as _ns_inode

    st = tb._load()
    netns = {h.netns_inode for h in st.hosts.values()}
    pids = {h.holder_pid for h in st.hosts.values()} | {h.libvirtd_pid for h in st.hosts.values()}
    report = tb.down()
    assert report["leftovers"] == {"processes": [], "mounts": [], "links": [], "netns": []}
    assert not STATE_DIR.exists()
    assert not any(Path(f"/proc/{p}").exists() for p in pids)
    alive_ns = {_ns_inode(p, "net") for p in os.listdir("/proc") if p.isdigit()}
    assert not (netns & alive_ns), "a testbed network namespace is still alive"
    assert str(STATE_DIR) not in Path("/proc/self/mountinfo").read_text()
    assert tb.status()["up"] is False
    again = tb.down()  # idempotent
    assert again["killed"] == []
