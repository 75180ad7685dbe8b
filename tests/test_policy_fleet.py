"""Fleets under an orchestrator's policy: the concurrency it applies, and `pausecast evacuate --policy`
comparing policies side by side."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from pausecast.cli import main
from pausecast.models.errors import ScenarioError
from pausecast.models.fleet import fleet_from_dict, with_policy
from pausecast.models.policy import PolicySpec
from pausecast.sim.fleet import simulate_fleet

from .test_fleet import IDLE_256, SRC_NIC_B_S, WIRE_256_MIB_B

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "evacuation-policies.toml"


def _fleet(count: int, sources: list[str], policy: dict | None = None, profile_policy: dict | None = None):
    """`count` idle 256 MiB VMs spread over `sources`, each host on its own 1 Gbit/s NIC, no RTT."""
    links = {f"{h}-nic": {"bandwidth_mbit_s": 1000, "rtt_ms": 0} for h in sources}
    links["dst-nic"] = {"bandwidth_mbit_s": 100000, "rtt_ms": 0}
    profile = {"overheads": {"profile": "none"}, **IDLE_256}
    if profile_policy:
        profile["policy"] = profile_policy
    data = {
        "links": links,
        "hosts": {**{h: {"links": [f"{h}-nic"]} for h in sources}, "dst": {"links": ["dst-nic"]}},
        "profiles": {"p": profile},
        "plan": {"max_per_source_host": 0},
        "vms": [{"profile": "p", "count": count, "source": sources, "destination": "dst"}],
    }
    if policy is not None:
        data["policy"] = policy
    return fleet_from_dict(data)


def _most_at_once(rows, key=lambda r: "all") -> dict[str, int]:
    """The most migrations running at once, per `key`, from the rows' start and end times."""
    edges: dict[str, list[tuple[float, int]]] = {}
    for r in rows:
        edges.setdefault(key(r), []).extend([(r["slot_wait_s"], 1), (r["end_s"], -1)])
    out = {}
    for k, points in edges.items():
        running = most = 0
        for _, step in sorted(points, key=lambda p: (p[0], p[1])):
            running += step
            most = max(most, running)
        out[k] = most
    return out


def test_nova_runs_one_outbound_migration_per_host_so_each_host_drains_its_vms_in_turn():
    # nova/conf/compute.py max_concurrent_live_migrations = 1: 3 idle VMs from one host, one after the
    # other, each alone on the host's NIC: 3 x wire / C
    rows = simulate_fleet(_fleet(3, ["a"], {"orchestrator": "nova"})).records
    assert _most_at_once(rows) == {"all": 1}
    assert max(r["end_s"] for r in rows) == pytest.approx(3 * WIRE_256_MIB_B / SRC_NIC_B_S, rel=1e-6)


def test_kubevirt_runs_two_per_node_and_five_in_the_cluster():
    # virt-config.go: parallelOutboundMigrationsPerNode 2, parallelMigrationsPerCluster 5
    rows = simulate_fleet(_fleet(12, ["a", "b", "c", "d"], {"orchestrator": "kubevirt"})).records
    assert _most_at_once(rows) == {"all": 5}
    # 5 slots over 4 hosts: some host runs 2 at once, none more
    assert max(_most_at_once(rows, key=lambda r: r["source_host"]).values()) == 2


def test_a_fleet_policy_reaches_every_vm_and_its_settings_the_plan():
    fleet = _fleet(4, ["a"], {"orchestrator": "nova", "nova": {"max_concurrent_live_migrations": 2}})
    assert fleet.plan.max_per_source_host == 2
    assert {vm.scenario.policy.orchestrator for vm in fleet.vms} == {"nova"}
    # "none" keeps the plan as the file gives it
    assert with_policy(fleet, PolicySpec()).plan.max_per_source_host == 2


@pytest.mark.parametrize(("policy", "profile_policy", "field"), [
    ({"orchestrator": "nova"}, {"orchestrator": "kubevirt"}, "profiles.p.policy"),
    ({"orchestrator": "nova", "ovirt": {"migration_downtime": 100}}, None, "policy.ovirt.migration_downtime"),
    ({"orchestrator": "nova", "nova": {"live_migration_downtime_steps": 2}}, None,
     "policy.nova.live_migration_downtime_steps"),
])
def test_fleet_policy_errors_are_one_line_naming_the_field(policy, profile_policy, field):
    with pytest.raises(ScenarioError) as err:
        _fleet(2, ["a"], policy, profile_policy)
    assert err.value.field == field and "\n" not in str(err.value)


def test_evacuate_compares_policies_side_by_side(tmp_path, capsys):
    args = ["evacuate", str(EXAMPLE), "--results", str(tmp_path)]
    assert main([*args, "--policy", "nova", "--policy", "kubevirt"]) == 0
    out = capsys.readouterr().out
    assert "under 2 policies" in out and "nova" in out and "kubevirt" in out
    folder = tmp_path / "rack-a-policies"
    table = pd.read_csv(folder / "policies.csv")
    assert list(table["orchestrator"]) == ["nova", "kubevirt"]
    for orchestrator in ("nova", "kubevirt"):
        summary = json.loads((folder / orchestrator / "summary.json").read_text())
        row = table[table["orchestrator"] == orchestrator].iloc[0]
        assert summary["makespan_s"] == pytest.approx(row["makespan_s"])
        assert summary["vms"] == 40
    assert (folder / "policies.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # KubeVirt aborts the cache VMs past 150 s x 9 GB: every failure is a timeout, none not-converged
    kubevirt = json.loads((folder / "kubevirt" / "summary.json").read_text())
    assert kubevirt["failures"] == {"timeout": 4}


def test_evacuate_refuses_an_unknown_orchestrator(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["evacuate", str(EXAMPLE), "--policy", "vmware"])
    assert exit_.value.code == 2
    assert "invalid choice: 'vmware'" in capsys.readouterr().err
