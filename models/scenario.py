"""Scenario: everything one migration prediction (or real run) depends on.

Frozen dataclasses whose field names carry their units. Defaults are libvirt's or QEMU's own where
those exist, each with its source. Each field's rule is declared beside its default (models/schema.py);
models/files.py reads and writes scenarios, models/identity.py hashes them.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass, field
from typing import Any

from . import auto_converge as ac
from . import identity
from . import limits as lim
from .association import STATUS_POLL_INTERVAL_MS, STATUS_POLL_TIMEOUT_S
from .overheads import load_overheads_profile
from .policy import PolicySpec
from .schema import spec


@dataclass(frozen=True)
class DirtySpec:
    # constant | hotcold | trace
    model: str = spec("constant", choices=("constant", "hotcold", "trace"))
    # the worked example (models/closed_form.py): 250 MB/s = 238.4 MiB/s of distinct pages
    rate_mib_s: float = spec(238.4, lo=0.0, most=lim.DIRTY_RATE_MIB_S)
    # hot/cold (Clark et al. NSDI 2005 writable working set): a hot set rewritten continuously...
    hot_set_mib: float = spec(0.0, lo=0.0, most=lim.MEMORY_MIB)
    hot_rate_mib_s: float = spec(0.0, lo=0.0, most=lim.DIRTY_RATE_MIB_S)
    # ...plus a cold linear rate over the rest of the written memory
    cold_rate_mib_s: float = spec(0.0, lo=0.0, most=lim.DIRTY_RATE_MIB_S)
    # trace: CSV with columns t_s, dirty_pages (distinct pages dirtied since the previous row)
    path: str = spec("")
    # how the pages dirtied between two bitmap syncs fall on those still pending. random: any written
    # page alike. sweep (constant only): each page once per round, as a scan, a log or the testbed's
    # guest writes them, so a page still pending is not dirtied again before its round comes back.
    pattern: str = spec("random", choices=("random", "sweep"))


@dataclass(frozen=True)
class VmSpec:
    # libvirt has no default memory; 4 GiB is the worked example's (models/closed_form.py)
    memory_mib: float = spec(4096.0, lo=0.0, lo_open=True, most=lim.MEMORY_MIB)
    # QEMU TARGET_PAGE_SIZE on x86-64
    page_size_bytes: int = spec(4096, lo=512, hi=1 << 30)
    # pages the guest never writes during the move: QEMU sends each as a header only
    zero_page_fraction: float = spec(0.0, lo=0.0, hi=1.0, hi_open=True)
    # where those zero pages lie in the address space, which QEMU walks in order (models/switchover.py).
    # spread: among the written pages, so every stretch of the walk sends both in proportion.
    # written-low: the written pages together at the bottom, the never-written ones above (a guest's
    # untouched high memory, as Linux leaves it until it is needed): the first pass sends all the data,
    # then the zero pages in one burst
    zero_page_layout: str = spec("spread", choices=("spread", "written-low"))
    # non-iterable device state sent in the stop-and-copy (virtio, CPU); QEMU sends it last
    device_state_mib: float = spec(0.0, lo=0.0, most=lim.DEVICE_STATE_MIB)
    # libvirt <vcpu> default
    vcpus: int = spec(1, lo=1, most=lim.VCPUS)
    dirty: DirtySpec = field(default_factory=DirtySpec)


@dataclass(frozen=True)
class LinkSpec:
    # the worked example (models/closed_form.py): 10 GbE
    bandwidth_mbit_s: float = spec(10000.0, lo=0.0, lo_open=True, least=lim.LINK_MIN_MBIT_S,
                                   most=lim.LINK_MBIT_S)
    # usable fraction of the line rate for the migration stream (TCP/IP framing, competing traffic)
    efficiency: float = spec(1.0, lo=0.0, hi=1.0, lo_open=True, least=lim.EFFICIENCY)
    # a same-rack round trip
    rtt_ms: float = spec(0.2, lo=0.0, most=lim.RTT_MS)
    # what waits in the sender's TCP socket and the link's queue when QEMU writes faster than the link
    # carries (a link-bound live phase); it drains inside the pause. 0: not modelled (nor in fleets).
    # Measured 1.3-1.8 MiB with `ss` on the testbed's 300 Mbit/s tbf link (Linux autotunes the send
    # buffer up to tcp_wmem)
    socket_backlog_mib: float = spec(0.0, lo=0.0, most=lim.SOCKET_BACKLOG_MIB)
    # the fastest QEMU's migration thread writes the stream, whatever the link: on a path faster than
    # the sender (a veth, a fast NIC) it bounds an uncapped live phase and the stop-and-copy, and the
    # link's queue stays empty (no backlog). 0: unbounded, the link binds. `pausecast calibrate` fits it
    sender_mib_s: float = spec(0.0, lo=0.0, least=lim.SENDER_MIN_MIB_S, most=lim.SENDER_MIB_S, off=0.0)
    # the stop-and-copy's own share of the line rate and its sender's rate, 0: as `efficiency` and
    # `sender_mib_s`. They differ where the live phase shares the host's CPUs with the running guest
    # and the stop-and-copy does not: measured 0.83-0.92 of a tbf link against a live sender of 60-67
    # MiB/s on a 2-core testbed (pausecast/analysis/link_fit.py). `pausecast calibrate` fits both
    final_copy_efficiency: float = spec(0.0, lo=0.0, hi=1.0, least=lim.EFFICIENCY, off=0.0)
    final_copy_sender_mib_s: float = spec(0.0, lo=0.0, least=lim.SENDER_MIN_MIB_S, most=lim.SENDER_MIB_S,
                                          off=0.0)


@dataclass(frozen=True)
class MigrationSpec:
    # QEMU migration/options.c: DEFAULT_MIGRATE_SET_DOWNTIME 300 ms (libvirt leaves it unless told)
    max_downtime_ms: float = spec(300.0, lo=0.0, lo_open=True, most=lim.MAX_DOWNTIME_MS)
    # libvirt: 0 = unlimited (it overrides QEMU's own 128 MiB/s max-bandwidth default)
    bandwidth_mib_s: float = spec(0.0, lo=0.0, least=lim.MIGRATION_MIN_MIB_S, most=lim.MIGRATION_MIB_S,
                                  off=0.0)
    # qemu: QEMU's rule (models/switchover.py); pass-end: the textbook rule that the closed form solves
    switchover_rule: str = spec("qemu", choices=("qemu", "pass-end"))
    # virsh migrate --timeout; 0 = none (libvirt's default)
    timeout_s: float = spec(0.0, lo=0.0, least=lim.MIGRATION_MIN_TIMEOUT_S, most=lim.MIGRATION_TIMEOUT_S,
                            off=0.0)
    # virsh migrate --timeout-suspend / --timeout-postcopy; Nova's default action is abort
    timeout_action: str = spec("abort", choices=("abort", "pause", "postcopy"))
    # auto-converge (models/auto_converge.py): virsh migrate --auto-converge (VIR_MIGRATE_AUTO_CONVERGE);
    # off, as in libvirt and QEMU
    auto_converge: bool = spec(False)
    # libvirt VIR_MIGRATE_PARAM_AUTO_CONVERGE_INITIAL / _INCREMENT = QEMU cpu-throttle-initial /
    # -increment, QEMU's defaults (models/auto_converge.py: 20, 10); QEMU's migrate_params_check
    # allows 1-99
    auto_converge_initial_pct: int = spec(ac.INITIAL_PCT, lo=1, hi=99)
    auto_converge_increment_pct: int = spec(ac.INCREMENT_PCT, lo=1, hi=99)
    # QEMU max-cpu-throttle (99, 1-99), throttle-trigger-threshold (50, 1-100), cpu-throttle-tailslow
    # (false); libvirt has no parameter for them
    max_cpu_throttle_pct: int = spec(ac.MAX_PCT, lo=1, hi=99)
    throttle_trigger_threshold_pct: int = spec(ac.TRIGGER_THRESHOLD_PCT, lo=1, hi=100)
    cpu_throttle_tailslow: bool = spec(False)
    # p2p: virDomainMigrateToURI3 with VIR_MIGRATE_PEER2PEER (Nova); direct: managed virDomainMigrate3
    mode: str = spec("p2p", choices=("p2p", "direct"))
    # virsh migrate --persistent (VIR_MIGRATE_PERSIST_DEST): define the domain on the destination;
    # off, as in virsh: the domain arrives transient
    persistent: bool = spec(False, physics=False)
    # virsh migrate --undefinesource (VIR_MIGRATE_UNDEFINE_SOURCE): drop the source's definition
    undefine_source: bool = spec(False, physics=False)


@dataclass(frozen=True)
class PortProfileSpec:
    # <virtualport type=...> on a type='direct' NIC; none = no association at all
    type: str = spec("none", choices=("none", "802.1Qbg", "802.1Qbh"))
    # libvirt associates each NIC in turn
    vnics: int = spec(1, lo=1, hi=64)


@dataclass(frozen=True)
class SwitchSpec:
    # lldpad in bridge mode answered in 2-4 ms on the namespace testbed
    service_time_ms: float = spec(3.0, lo=0.0, most=lim.SERVICE_TIME_MS)
    service_distribution: str = spec("constant", choices=("constant", "exponential", "lognormal"))
    # coefficient of variation, used by the lognormal distribution
    service_cv: float = spec(1.0, lo=0.0, most=lim.SERVICE_CV)
    # association requests the switch serves at once
    capacity: int = spec(1, lo=1, most=lim.SWITCH_CAPACITY)
    # other tenants' association requests per second (Poisson)
    background_load_per_s: float = spec(0.0, lo=0.0, most=lim.BACKGROUND_PER_S)
    # answer | refuse (answers with an error) | silent (never answers)
    mode: str = spec("answer", choices=("answer", "refuse", "silent"))
    # libvirt's status polling (models/association.py)
    poll_interval_ms: float = spec(STATUS_POLL_INTERVAL_MS, lo=0.0, lo_open=True,
                                   least=lim.POLL_MIN_INTERVAL_MS, most=lim.POLL_INTERVAL_MS)
    timeout_s: float = spec(STATUS_POLL_TIMEOUT_S, lo=0.0, lo_open=True, most=lim.SWITCH_TIMEOUT_S)


@dataclass(frozen=True)
class OverheadsSpec:
    """Fixed costs of a migration. `profile` names where the defaults came from; any cost given
    inline overrides the profile. Loading resolves every cost to a number."""

    # none: every fixed cost is zero; default: the built-in profile; or a path to a calibrated profile
    profile: str = spec("default")
    begin_ms: float = spec(0.0, lo=0.0, most=lim.OVERHEAD_MS)
    prepare_ms: float = spec(0.0, lo=0.0, most=lim.OVERHEAD_MS)
    setup_ms: float = spec(0.0, lo=0.0, most=lim.OVERHEAD_MS)
    handshake_ms: float = spec(0.0, lo=0.0, most=lim.OVERHEAD_MS)
    finish_ms: float = spec(0.0, lo=0.0, most=lim.OVERHEAD_MS)
    resume_ms: float = spec(0.0, lo=0.0, most=lim.OVERHEAD_MS)
    confirm_ms: float = spec(0.0, lo=0.0, most=lim.OVERHEAD_MS)
    announce_ms: float = spec(0.0, lo=0.0, most=lim.OVERHEAD_MS)


@dataclass(frozen=True)
class Scenario:
    # labels results; a renamed scenario is the same migration
    name: str = spec("default", physics=False)
    vm: VmSpec = field(default_factory=VmSpec)
    link: LinkSpec = field(default_factory=LinkSpec)
    migration: MigrationSpec = field(default_factory=MigrationSpec)
    port_profile: PortProfileSpec = field(default_factory=PortProfileSpec)
    switch: SwitchSpec = field(default_factory=SwitchSpec)
    # every cost resolved, as loading a file without [overheads] gives
    overheads: OverheadsSpec = field(
        default_factory=lambda: OverheadsSpec(profile="default", **load_overheads_profile("default")))
    # the orchestrator whose monitor loop drives the migration (models/policy/); none: plain libvirt
    policy: PolicySpec = field(default_factory=PolicySpec)

    @functools.cached_property
    def scenario_id(self) -> str:
        """The key that joins a prediction and a measurement: a hash of its physics (everything but
        the fields declared `physics=False`, such as the name); see models/identity.py."""
        return identity.scenario_id(self)

    def replace(self, **changes: Any) -> Scenario:
        return dataclasses.replace(self, **changes)
