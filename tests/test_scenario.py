"""Scenarios: TOML round trips, defaults and their sources, and one-line errors for bad input."""

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pausecast import default_scenario_path
from pausecast.models.dirty import ConstantDirty, HotColdDirty, dirty_model_for
from pausecast.models.errors import ScenarioError
from pausecast.models.files import load_scenario, scenario_from_dict, scenario_from_toml, scenario_to_toml
from pausecast.models.overheads import DEFAULT_PROFILE_MS
from pausecast.models.record import COLUMNS, REQUIRED_COLUMNS
from pausecast.models.scenario import Scenario

EXAMPLES = sorted(Path(__file__).resolve().parent.parent.joinpath("examples").glob("*.toml"))
SINGLE_VM_EXAMPLES = [p for p in EXAMPLES if "[vm]" in p.read_text() and "[[" not in p.read_text()]


def test_bundled_default_is_the_dataclass_default():
    assert load_scenario(default_scenario_path()) == Scenario()


def test_defaults_are_libvirt_and_qemus_own():
    s = Scenario()
    assert s.migration.max_downtime_ms == 300  # QEMU downtime-limit
    assert s.migration.bandwidth_mib_s == 0  # libvirt: unlimited
    assert s.switch.poll_interval_ms == 125 and s.switch.timeout_s == 10  # libvirt's polling
    assert s.vm.page_size_bytes == 4096
    assert s.overheads.setup_ms == DEFAULT_PROFILE_MS["setup_ms"]


@pytest.mark.parametrize("path", [*SINGLE_VM_EXAMPLES, Path(str(default_scenario_path()))],
                         ids=lambda p: p.name)
def test_toml_round_trip(path):
    s = load_scenario(path)
    again = scenario_from_toml(scenario_to_toml(s))
    assert again == s
    assert again.scenario_id == s.scenario_id


finite = st.floats(0.001, 1e5, allow_nan=False)


@settings(max_examples=50)
@given(memory=finite, rate=finite, mbit=finite, eff=st.floats(0.01, 1), limit=finite,
       rule=st.sampled_from(["qemu", "pass-end"]), action=st.sampled_from(["abort", "pause", "postcopy"]),
       port=st.sampled_from(["none", "802.1Qbg", "802.1Qbh"]), vnics=st.integers(1, 8),
       name=st.text(max_size=20))
def test_any_valid_scenario_round_trips(memory, rate, mbit, eff, limit, rule, action, port, vnics, name):
    s = scenario_from_dict({"name": name, "vm": {"memory_mib": memory, "dirty": {"rate_mib_s": rate}},
                            "link": {"bandwidth_mbit_s": mbit, "efficiency": eff},
                            "migration": {"max_downtime_ms": limit, "switchover_rule": rule,
                                          "timeout_action": action},
                            "port_profile": {"type": port, "vnics": vnics}})
    assert scenario_from_toml(scenario_to_toml(s)) == s


def test_scenario_id_ignores_the_name_and_follows_the_physics():
    a = scenario_from_dict({"name": "a"})
    assert a.scenario_id == scenario_from_dict({"name": "b"}).scenario_id
    assert a.scenario_id != scenario_from_dict({"vm": {"memory_mib": 1024}}).scenario_id


def test_record_has_every_required_column():
    assert set(REQUIRED_COLUMNS) <= set(COLUMNS)


@pytest.mark.parametrize(("data", "field", "says"), [
    ({"vm": {"memory": 1}}, "vm.memory", "valid keys: memory_mib, page_size_bytes"),
    ({"vms": {}}, "vms", "valid keys: name, vm, link"),
    ({"vm": {"memory_mib": "4 GiB"}}, "vm.memory_mib", "expected a number"),
    ({"vm": {"memory_mib": True}}, "vm.memory_mib", "expected a number"),
    ({"vm": {"memory_mib": 0}}, "vm.memory_mib", "allowed range (0, inf)"),
    ({"vm": {"vcpus": 1.5}}, "vm.vcpus", "expected an integer"),
    ({"vm": {"page_size_bytes": 3000}}, "vm.page_size_bytes", "power of two"),
    ({"vm": {"zero_page_fraction": 1.0}}, "vm.zero_page_fraction", "allowed range [0, 1)"),
    ({"vm": {"dirty": {"model": "linear"}}}, "vm.dirty.model", "allowed: constant | hotcold | trace"),
    ({"vm": {"zero_page_layout": "low"}}, "vm.zero_page_layout", "allowed: spread | written-low"),
    ({"vm": {"dirty": {"model": "hotcold"}}}, "vm.dirty.hot_set_mib", "hot set > 0"),
    ({"vm": {"memory_mib": 64, "dirty": {"model": "hotcold", "hot_set_mib": 128}}},
     "vm.dirty.hot_set_mib", "must fit"),
    ({"vm": {"dirty": {"model": "trace"}}}, "vm.dirty.path", "needs a CSV path"),
    ({"vm": {"dirty": {"model": "trace", "path": "/nonexistent.csv"}}}, "vm.dirty.path", "cannot be read"),
    ({"link": {"efficiency": 1.5}}, "link.efficiency", "allowed range (0, 1]"),
    ({"link": 5}, "link", "expected a table"),
    ({"migration": {"switchover_rule": "textbook"}}, "migration.switchover_rule", "qemu | pass-end"),
    ({"migration": {"timeout_action": "kill"}}, "migration.timeout_action", "abort | pause | postcopy"),
    ({"migration": {"bandwidth_mib_s": -1}}, "migration.bandwidth_mib_s", "allowed range [0, inf)"),
    ({"port_profile": {"type": "802.1Qbx"}}, "port_profile.type", "none | 802.1Qbg | 802.1Qbh"),
    ({"switch": {"capacity": 0}}, "switch.capacity", "allowed range [1, inf)"),
    ({"overheads": {"profile": "/no/such/profile.toml"}}, "overheads.profile", "readable profile"),
    ({"overheads": {"setup_ms": -5}}, "overheads.setup_ms", "allowed range [0, inf)"),
    ({"overheads": {"setup": 5}}, "overheads.setup", "valid keys: profile, begin_ms"),
])
def test_bad_input_names_the_field_the_value_and_what_is_allowed(data, field, says):
    with pytest.raises(ScenarioError) as err:
        scenario_from_dict(data)
    assert err.value.field == field
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith(f"{field} = ")
    assert says in message


def test_bad_trace_rows_are_reported_with_their_line(tmp_path):
    trace = tmp_path / "t.csv"
    trace.write_text("t_s,dirty_pages\n1,100\n0.5,100\n")
    with pytest.raises(ScenarioError, match="line 3: t_s must increase"):
        scenario_from_dict({"vm": {"dirty": {"model": "trace", "path": str(trace)}}})


def test_relative_paths_resolve_against_the_scenario_file(tmp_path):
    (tmp_path / "trace.csv").write_text("t_s,dirty_pages\n1,1000\n")
    (tmp_path / "profile.toml").write_text("[overheads]\nsetup_ms = 123.0\n")
    (tmp_path / "s.toml").write_text('[vm.dirty]\nmodel = "trace"\npath = "trace.csv"\n'
                                     '[overheads]\nprofile = "profile.toml"\nconfirm_ms = 7\n')
    s = load_scenario(tmp_path / "s.toml")
    assert Path(s.vm.dirty.path) == tmp_path / "trace.csv"
    assert s.overheads.setup_ms == 123.0  # from the profile
    assert s.overheads.confirm_ms == 7.0  # given inline, overrides the profile
    assert s.overheads.prepare_ms == DEFAULT_PROFILE_MS["prepare_ms"]  # not in the profile
    assert scenario_from_toml(scenario_to_toml(s)) == s


def test_overrides_use_toml_values(tmp_path):
    s = load_scenario(default_scenario_path(), ["vm.dirty.rate_mib_s=10", 'port_profile.type="802.1Qbh"',
                                                "migration.timeout_action=pause"])
    assert s.vm.dirty.rate_mib_s == 10.0
    assert s.port_profile.type == "802.1Qbh"
    assert s.migration.timeout_action == "pause"
    with pytest.raises(ScenarioError, match=r"expected section\.key=value"):
        load_scenario(default_scenario_path(), ["vm.memory_mib"])


def test_dirty_models_never_exceed_the_written_memory():
    s = scenario_from_dict({"vm": {"memory_mib": 100, "zero_page_fraction": 0.5,
                                   "dirty": {"rate_mib_s": 1000}}})
    model = dirty_model_for(s.vm)
    assert isinstance(model, ConstantDirty)
    written = 100 * 256 * 0.5
    assert model.distinct_pages(0, 0.01) == pytest.approx(10 * 256)
    assert model.distinct_pages(0, 60) == pytest.approx(written)


def test_hot_set_saturates_and_cold_pages_keep_coming():
    s = scenario_from_dict({"vm": {"memory_mib": 1024, "dirty": {
        "model": "hotcold", "hot_set_mib": 64, "hot_rate_mib_s": 640, "cold_rate_mib_s": 10}}})
    model = dirty_model_for(s.vm)
    assert isinstance(model, HotColdDirty)
    # in 0.05 s: 32 MiB of the hot set + 0.5 MiB cold; after 1 s: the whole hot set + 10 MiB cold
    assert model.distinct_pages(0, 0.05) == pytest.approx(32.5 * 256)
    assert model.distinct_pages(3, 4) == pytest.approx(74 * 256)
    # the cold sweep too is bounded by the memory outside the hot set
    assert model.distinct_pages(0, 1e6) == pytest.approx(1024 * 256)
