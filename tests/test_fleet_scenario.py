"""Fleet files (models/fleet.py): what they build, and one-line errors naming the field when bad."""

import copy
from pathlib import Path

import pytest
import tomli_w

from pausecast.cli import main
from pausecast.models.errors import ScenarioError
from pausecast.models.fleet import fleet_from_dict, launch_order, load_fleet, path_between
from pausecast.models.scenario import SwitchSpec

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "evacuation.toml"

BASE = {
    "name": "drain",
    "links": {"a-nic": {"bandwidth_mbit_s": 10000}, "b-nic": {"bandwidth_mbit_s": 25000, "rtt_ms": 0.3},
              "c-nic": {"bandwidth_mbit_s": 10000},
              "rack-up": {"bandwidth_mbit_s": 40000, "efficiency": 0.5}},
    "hosts": {"a": {"links": ["a-nic", "rack-up"], "switch": "tor"},
              "b": {"links": ["b-nic", "rack-up"], "switch": "tor"},
              "c": {"links": ["c-nic"], "switch": "tor"}},
    "switches": {"tor": {"service_time_ms": 5, "capacity": 2}},
    "profiles": {"small": {"vm": {"memory_mib": 1024, "dirty": {"rate_mib_s": 80}},
                           "port_profile": {"type": "802.1Qbh"}},
                 "big": {"vm": {"memory_mib": 8192, "dirty": {"rate_mib_s": 10}}}},
    "plan": {"max_per_source_host": 2},
    "vms": [{"profile": "big", "count": 2, "source": "a", "destination": ["b", "c"]},
            {"name": "web", "profile": "small", "count": 3, "source": ["a", "b"], "destination": "c"},
            {"name": "solo", "profile": "small", "source": "c", "destination": "a"}],
}


def fleet(**changes):
    data = copy.deepcopy(BASE)
    data.update(changes)
    return fleet_from_dict(data)


def test_vms_are_drawn_from_profiles_named_and_dealt_round_robin():
    vms = fleet().vms
    assert [(v.name, v.profile, v.source, v.destination) for v in vms] == [
        ("big-1", "big", "a", "b"), ("big-2", "big", "a", "c"),
        ("web-1", "small", "a", "c"), ("web-2", "small", "b", "c"), ("web-3", "small", "a", "c"),
        ("solo", "small", "c", "a")]


def test_traffic_turns_below_a_shared_uplink():
    f = fleet()
    # a and b share the rack uplink: a -> b crosses only the two NICs
    assert path_between(f.hosts["a"], f.hosts["b"]) == (("a-nic", "out"), ("b-nic", "in"))
    assert path_between(f.hosts["a"], f.hosts["c"]) == (("a-nic", "out"), ("rack-up", "out"), ("c-nic", "in"))


def test_each_vm_scenario_is_its_profile_on_its_path_with_its_destination_switch():
    big_to_c = fleet().vms[1]
    s = big_to_c.scenario
    # bottleneck of a-nic 10000, rack-up 40000 x 0.5 = 20000, c-nic 10000; RTT 0.1 + 0.1 + 0.1 ms
    assert s.link.bandwidth_mbit_s == 10000 and s.link.efficiency == 1.0
    assert s.link.rtt_ms == pytest.approx(0.3)
    assert s.switch == SwitchSpec(service_time_ms=5, capacity=2)
    assert s.vm.memory_mib == 8192 and s.name == "big-2"


def test_launch_orders_are_stable_sorts():
    f = fleet()
    # memory: big-1, big-2 = 8192; web-1..3, solo = 1024; dirty rate: small 80 MiB/s, big 10 MiB/s
    assert launch_order(f) == [0, 1, 2, 3, 4, 5]
    assert launch_order(fleet(plan={"order": "smallest-first"})) == [2, 3, 4, 5, 0, 1]
    assert launch_order(fleet(plan={"order": "largest-first"})) == [0, 1, 2, 3, 4, 5]
    assert launch_order(fleet(plan={"order": "lowest-dirty-first"})) == [0, 1, 2, 3, 4, 5]
    swapped = copy.deepcopy(BASE)
    swapped["profiles"]["big"]["vm"]["dirty"]["rate_mib_s"] = 500
    assert launch_order(fleet_from_dict({**swapped, "plan": {"order": "lowest-dirty-first"}})) == [
        2, 3, 4, 5, 0, 1]


def test_link_changes_are_read_in_time_order_and_down_is_allowed():
    f = fleet(links={**BASE["links"], "rack-up": {"bandwidth_mbit_s": 40000, "changes": [
        {"at_s": 0, "bandwidth_mbit_s": 0}, {"at_s": 90.5, "bandwidth_mbit_s": 20000}]}})
    assert [(c.at_s, c.bandwidth_mbit_s) for c in f.links["rack-up"].changes] == [(0.0, 0.0), (90.5, 20000.0)]
    # the path's bottleneck, and so each VM's single-VM scenario, is the link's initial rate
    assert f.vms[1].scenario.link.bandwidth_mbit_s == 10000


def test_the_example_loads():
    f = load_fleet(EXAMPLE)
    assert f.name == "rack-a-drain"
    assert len(f.vms) == 13


BAD = [
    # (what is wrong, edit of the base dict, the field the error must name)
    ("unknown top-level key", lambda d: d.update(hostz={}), "hostz"),
    ("bad fleet name", lambda d: d.update(name="my fleet"), "name"),
    ("link with zero bandwidth", lambda d: d["links"]["a-nic"].update(bandwidth_mbit_s=0),
     "links.a-nic.bandwidth_mbit_s"),
    ("unknown link key", lambda d: d["links"]["a-nic"].update(speed=1), "links.a-nic.speed"),
    ("host on an unknown link", lambda d: d["hosts"]["a"].update(links=["a-nic", "nope"]), "hosts.a.links"),
    ("host without links", lambda d: d["hosts"]["a"].pop("links"), "hosts.a.links"),
    ("host listing a link twice", lambda d: d["hosts"]["a"].update(links=["a-nic", "a-nic"]),
     "hosts.a.links"),
    ("host on an unknown switch", lambda d: d["hosts"]["a"].update(switch="spine"), "hosts.a.switch"),
    ("switch with zero capacity", lambda d: d["switches"]["tor"].update(capacity=0), "switches.tor.capacity"),
    ("profile with a bad value", lambda d: d["profiles"]["big"]["vm"].update(memory_mib=-1),
     "profiles.big.vm.memory_mib"),
    ("profile with its own link", lambda d: d["profiles"]["big"].update(link={"bandwidth_mbit_s": 1}),
     "profiles.big.link"),
    ("profile with its own switch", lambda d: d["profiles"]["big"].update(switch={}), "profiles.big.switch"),
    ("bad plan order", lambda d: d["plan"].update(order="random"), "plan.order"),
    ("negative concurrency", lambda d: d["plan"].update(max_concurrent=-1), "plan.max_concurrent"),
    ("no vms", lambda d: d.update(vms=[]), "vms"),
    ("vm with an unknown profile", lambda d: d["vms"][0].update(profile="huge"), "vms[0].profile"),
    ("vm count zero", lambda d: d["vms"][1].update(count=0), "vms[1].count"),
    ("vm without destination", lambda d: d["vms"][0].pop("destination"), "vms[0].destination"),
    ("vm to an unknown host", lambda d: d["vms"][0].update(destination=["b", "z"]), "vms[0].destination"),
    ("vm to its own host", lambda d: d["vms"][2].update(destination="c"), "vms[2].destination"),
    ("duplicate vm name", lambda d: d["vms"][2].update(name="web-1"), "vms[2].name"),
    ("unknown vm key", lambda d: d["vms"][0].update(host="a"), "vms[0].host"),
    ("ports but the host has no switch", lambda d: d["hosts"]["c"].pop("switch"), "hosts.c.switch"),
    ("link changes not a list", lambda d: d["links"]["rack-up"].update(changes={"at_s": 1}),
     "links.rack-up.changes"),
    ("link change not a table", lambda d: d["links"]["rack-up"].update(changes=[5]),
     "links.rack-up.changes[0]"),
    ("link change with an unknown key", lambda d: d["links"]["rack-up"].update(
        changes=[{"at_s": 1, "bandwidth_mbit_s": 0, "efficiency": 0.5}]),
     "links.rack-up.changes[0].efficiency"),
    ("link change without a time", lambda d: d["links"]["rack-up"].update(changes=[{"bandwidth_mbit_s": 0}]),
     "links.rack-up.changes[0].at_s"),
    ("link change without a bandwidth", lambda d: d["links"]["rack-up"].update(changes=[{"at_s": 5}]),
     "links.rack-up.changes[0].bandwidth_mbit_s"),
    ("link change before the start", lambda d: d["links"]["rack-up"].update(
        changes=[{"at_s": -1, "bandwidth_mbit_s": 0}]), "links.rack-up.changes[0].at_s"),
    ("link change after a year", lambda d: d["links"]["rack-up"].update(
        changes=[{"at_s": 4e7, "bandwidth_mbit_s": 0}]), "links.rack-up.changes[0].at_s"),
    ("link changes out of order", lambda d: d["links"]["rack-up"].update(
        changes=[{"at_s": 60, "bandwidth_mbit_s": 0}, {"at_s": 60, "bandwidth_mbit_s": 1000}]),
     "links.rack-up.changes[1].at_s"),
    ("link change to a crawl, not down", lambda d: d["links"]["rack-up"].update(
        changes=[{"at_s": 1, "bandwidth_mbit_s": 1e-6}]), "links.rack-up.changes[0].bandwidth_mbit_s"),
    ("link change past the fastest Ethernet", lambda d: d["links"]["rack-up"].update(
        changes=[{"at_s": 1, "bandwidth_mbit_s": 2e6}]), "links.rack-up.changes[0].bandwidth_mbit_s"),
    ("link change to a negative bandwidth", lambda d: d["links"]["rack-up"].update(
        changes=[{"at_s": 1, "bandwidth_mbit_s": -5}]), "links.rack-up.changes[0].bandwidth_mbit_s"),
]


@pytest.mark.parametrize(("what", "edit", "field"), BAD, ids=[b[0] for b in BAD])
def test_a_bad_fleet_file_is_one_line_naming_the_field(tmp_path, capsys, what, edit, field):
    data = copy.deepcopy(BASE)
    edit(data)
    path = tmp_path / "fleet.toml"
    path.write_text(tomli_w.dumps(data))
    with pytest.raises(ScenarioError) as caught:
        load_fleet(path)
    assert caught.value.field == field
    assert main(["evacuate", str(path), "--results", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{path}: {field} = " in err
    assert not (tmp_path / "out").exists()


def test_unreadable_and_invalid_toml_files(tmp_path, capsys):
    assert main(["evacuate", str(tmp_path / "missing.toml")]) == 2
    assert "fleet file" in capsys.readouterr().err
    broken = tmp_path / "broken.toml"
    broken.write_text("name = \n")
    assert main(["evacuate", str(broken)]) == 2
    assert "not valid TOML" in capsys.readouterr().err
