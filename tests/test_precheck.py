"""The pre-check's pure parts: what a domain's XML says, and the scenario the facts make."""

import math

import numpy as np
import pytest

from pausecast.executor.migration.precheck import (
    SAMPLED_MIB_PER_PAGE,
    DirtyRate,
    DomainFacts,
    migration_for,
    parse_domain_xml,
    sampling_stderr_mib_s,
    scenario_for,
)
from pausecast.models.scenario import Scenario

from .conftest import make

XML = """<domain type='kvm'>
  <name>web1</name>
  <uuid>6c1f1a2e-33a4-4b55-9b2a-1f0c2d3e4f50</uuid>
  <memory unit='KiB'>8388608</memory>
  <currentMemory unit='GiB'>6</currentMemory>
  <vcpu placement='static'>4</vcpu>
  <devices>
    <interface type='direct'>
      <mac address='52:54:00:88:00:01'/>
      <source dev='vx0' mode='vepa'/>
      <virtualport type='802.1Qbg'>
        <parameters managerid='12' typeid='1193047' typeidversion='1'
                    instanceid='09b11c53-8b5c-4eeb-8f00-d84eaa0aaa4f'/>
      </virtualport>
    </interface>
    <interface type='direct'>
      <mac address='52:54:00:88:00:02'/>
      <source dev='vx0' mode='vepa'/>
      <virtualport type='802.1Qbg'/>
    </interface>
    <interface type='network'>
      <mac address='52:54:00:88:00:03'/>
      <source network='default'/>
    </interface>
  </devices>
</domain>"""


def test_domain_xml_gives_memory_vcpus_and_port_profiles():
    facts = parse_domain_xml(XML)
    assert facts.name == "web1"
    assert facts.memory_mib == 6 * 1024  # currentMemory, in its own unit
    assert facts.vcpus == 4
    assert [n.virtualport for n in facts.nics] == ["802.1Qbg", "802.1Qbg", ""]
    assert facts.port_profile == ("802.1Qbg", 2)


def test_memory_defaults_to_kib_and_no_virtualport_means_none():
    facts = parse_domain_xml("<domain><name>x</name><memory>262144</memory></domain>")
    assert facts.memory_mib == 256
    assert facts.vcpus == 1
    assert facts.port_profile == ("none", 1)


def test_scenario_takes_the_live_domain_and_keeps_what_it_cannot_tell():
    base = Scenario()
    facts = DomainFacts("web1", "u", 6144.0, 4, parse_domain_xml(XML).nics, max_downtime_ms=500.0,
                        max_speed_mib_s=0.0)
    s = scenario_for(base, facts, DirtyRate(123.4, "test", 3))
    assert s.name == "web1"
    assert (s.vm.memory_mib, s.vm.vcpus) == (6144.0, 4)
    assert (s.vm.dirty.model, s.vm.dirty.rate_mib_s) == ("constant", pytest.approx(123.4))
    assert (s.port_profile.type, s.port_profile.vnics) == ("802.1Qbg", 2)
    assert s.migration.max_downtime_ms == 500.0
    assert s.migration.bandwidth_mib_s == 0.0
    # what the domain cannot say stays as the base had it
    assert s.link == base.link and s.overheads == base.overheads and s.switch == base.switch


def test_what_the_operator_states_wins_over_the_domains_own_settings():
    # the operator runs `virsh migrate --bandwidth 32`; the domain's own max speed is unlimited (0) and
    # its max downtime was set to 500 ms
    facts = DomainFacts("web1", "u", 256.0, 1, (), max_downtime_ms=500.0, max_speed_mib_s=0.0)
    stated = make(migration={"bandwidth_mib_s": 32.0})
    migration, sources = migration_for(stated.migration, facts, {"bandwidth_mib_s": "--bandwidth"})
    assert (migration.bandwidth_mib_s, sources["bandwidth_mib_s"]) == (32.0, "--bandwidth")
    assert migration.max_downtime_ms == 500.0 and "migrate-getmaxdowntime" in sources["max_downtime_ms"]
    s = scenario_for(stated, facts, DirtyRate(20.0, "test", 3), stated={"bandwidth_mib_s": "--bandwidth"})
    assert (s.migration.bandwidth_mib_s, s.migration.max_downtime_ms) == (32.0, 500.0)
    # a daemon that cannot say (older libvirt): the scenario's defaults, said so
    _, sources = migration_for(Scenario().migration, DomainFacts("x", "u", 256.0, 1, ()), {})
    assert set(sources.values()) == {"the default"}


@pytest.mark.parametrize(("rate_mib_s", "calc_s", "runs"),
                         [(19.53125, 2.0, 1), (19.53125, 3.0, 3), (2.0, 2.0, 1)])
def test_sampling_error_bounds_the_spread_of_simulated_page_sampling(rate_mib_s, calc_s, runs):
    # QEMU's page sampling, simulated: a 256 MiB guest writing rate_mib_s over its RAM uniformly has
    # each of its 128 sampled pages (one per 2 MiB) dirty after calc_s with p = rate x calc_s / 256 MiB,
    # and reports the dirty samples x 2 MiB / calc_s; precheck averages `runs` such runs
    rng = np.random.default_rng(11)
    p = rate_mib_s * calc_s / 256
    estimates = rng.binomial(128, p, size=(40_000, runs)).mean(axis=1) * SAMPLED_MIB_PER_PAGE / calc_s
    spread = float(estimates.std())
    bound = sampling_stderr_mib_s(rate_mib_s, calc_s, runs)
    # an upper bound (binomial variance n p (1 - p) <= n p), tight to the factor sqrt(1 - p)
    assert bound * math.sqrt(1 - p) * 0.98 < spread < bound * 1.02


def test_the_precheck_analysis_worked_examples_hold():
    import doctest

    from pausecast.analysis import precheck

    result = doctest.testmod(precheck)
    assert result.attempted >= 5 and result.failed == 0
