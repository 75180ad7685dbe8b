"""Every input's physical range, the budgets checked before any work, and the readers' one-line errors
(models/limits.py): each refusal names the field, the value and what is allowed."""

import dataclasses
import json
import math
from pathlib import Path

import pytest

from pausecast import default_scenario_path
from pausecast.cli import main
from pausecast.models.errors import ScenarioError
from pausecast.models.fieldpaths import leaf_fields
from pausecast.models.files import load_scenario, scenario_from_dict
from pausecast.models.fleet import FleetLinkSpec, fleet_from_dict, load_fleet
from pausecast.models.limits import FLEET_VMS, SWEEP_RUNS, SWITCH_BACKLOG
from pausecast.models.record import MigrationRecord, contradictions
from pausecast.models.sweep import sweep_from_dict
from pausecast.sim import predict
from pausecast.sim.engine import simulate

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
LIMITED = [(path, f) for path, f in leaf_fields().items()
           if f.metadata.get("most") or f.metadata.get("least")]


def error_line(argv: list[str], capsys) -> str:
    assert main(argv) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert captured.out == "" and len(lines) == 1 and lines[0].startswith("pausecast: error: ")
    return lines[0]


def nested(path: str, value) -> dict:
    # an orchestrator's setting is one only under that orchestrator (models/policy/)
    parts = path.split(".")
    out: dict = {"policy": {"orchestrator": parts[1]}} if parts[0] == "policy" and len(parts) == 3 else {}
    table = out
    *parents, leaf = path.split(".")
    for part in parents:
        table = table.setdefault(part, {})
    table[leaf] = value
    return out


@pytest.mark.parametrize(("path", "f"), LIMITED, ids=[p for p, _ in LIMITED])
def test_a_value_past_its_physical_limit_is_refused_and_the_limit_itself_is_not(path, f):
    for side, beyond in (("most", 1.5), ("least", 0.5)):
        limit = f.metadata.get(side)
        if limit is None:
            continue
        step = 1 if side == "most" else -1
        value = limit.value * beyond if isinstance(f.default, float) else int(limit.value + step)
        with pytest.raises(ScenarioError) as err:
            scenario_from_dict(nested(path, value))
        assert err.value.field == path
        assert str(err.value).startswith(f"{path} = ") and f"at {side} " in str(err.value)
        assert limit.why in str(err.value)
        if path != "vm.dirty.hot_set_mib":  # the hot set must also fit the memory
            scenario_from_dict(nested(path, limit.value))


def test_zero_still_turns_a_limited_feature_off():
    s = scenario_from_dict({"migration": {"bandwidth_mib_s": 0, "timeout_s": 0}})
    assert (s.migration.bandwidth_mib_s, s.migration.timeout_s) == (0.0, 0.0)
    with pytest.raises(ScenarioError, match="at least 1 "):
        scenario_from_dict({"migration": {"bandwidth_mib_s": 0.5}})


def test_the_issues_nonsense_is_refused():
    for path, value in (("vm.memory_mib", 10**30), ("link.rtt_ms", 1e308), ("link.socket_backlog_mib", 1e308),
                        ("vm.device_state_mib", 1e308), ("link.bandwidth_mbit_s", 1e-300),
                        ("switch.background_load_per_s", 1e308)):
        with pytest.raises(ScenarioError) as err:
            scenario_from_dict(nested(path, value))
        assert err.value.field == path


def test_a_fleet_link_has_the_single_links_limits():
    for name in ("bandwidth_mbit_s", "efficiency", "rtt_ms"):
        fleet_field = next(f for f in dataclasses.fields(FleetLinkSpec) if f.name == name)
        single = leaf_fields()[f"link.{name}"]
        assert (fleet_field.metadata["least"], fleet_field.metadata["most"]) == \
            (single.metadata["least"], single.metadata["most"])


# ---------------------------------------------------------------------------------------------------
# NaN, infinity and undecodable bytes in every file


@pytest.mark.parametrize("value", ["nan", "inf", "1e400"])
def test_an_overheads_profile_with_nan_or_inf_is_refused(tmp_path, value):
    (tmp_path / "p.toml").write_text(f"[overheads]\nsetup_ms = {value}\n")
    with pytest.raises(ScenarioError) as err:
        scenario_from_dict({"overheads": {"profile": str(tmp_path / "p.toml")}})
    assert err.value.field == "overheads.profile" and "setup_ms" in str(err.value)


@pytest.mark.parametrize("row", ["nan,10", "1,inf", "inf,1", "1,1e400"])
def test_a_trace_with_nan_or_inf_is_refused_with_its_line(tmp_path, row):
    (tmp_path / "t.csv").write_text(f"t_s,dirty_pages\n{row}\n")
    with pytest.raises(ScenarioError, match="line 2: finite numbers expected"):
        scenario_from_dict({"vm": {"dirty": {"model": "trace", "path": str(tmp_path / "t.csv")}}})


def test_every_reader_turns_undecodable_bytes_into_one_line(tmp_path, capsys):
    bad = b"name = \"\xff\xfe\"\n"
    (tmp_path / "s.toml").write_bytes(bad)
    assert "is not UTF-8 text" in error_line(["predict", str(tmp_path / "s.toml")], capsys)
    assert "is not UTF-8 text" in error_line(["evacuate", str(tmp_path / "s.toml")], capsys)
    assert "is not UTF-8 text" in error_line(["sweep", str(tmp_path / "s.toml")], capsys)
    (tmp_path / "t.csv").write_bytes(b"t_s,dirty_pages\n1,\xff\n")
    (tmp_path / "p.toml").write_bytes(bad)
    (tmp_path / "trace.toml").write_text('[vm.dirty]\nmodel = "trace"\npath = "t.csv"\n')
    (tmp_path / "profile.toml").write_text('[overheads]\nprofile = "p.toml"\n')
    assert "vm.dirty.path" in error_line(["predict", str(tmp_path / "trace.toml")], capsys)
    assert "not UTF-8" in error_line(["predict", str(tmp_path / "profile.toml")], capsys)
    (tmp_path / "manifest.json").write_bytes(b"\xff")
    assert "manifest.json" in error_line(["plot", str(tmp_path)], capsys)


def test_a_manifest_without_a_definition_is_one_line(tmp_path, capsys):
    (tmp_path / "manifest.json").write_text("{}")
    assert "not a sweep's manifest" in error_line(["plot", str(tmp_path)], capsys)


# ---------------------------------------------------------------------------------------------------
# who is blamed


def test_a_bad_override_blames_the_override_as_the_readme_shows(capsys):
    line = error_line(["predict", "--set", "link.efficiency=2"], capsys)
    assert line == "pausecast: error: link.efficiency = 2.0: allowed range (0, 1]"


def test_a_bad_value_in_the_file_still_names_the_file(tmp_path):
    (tmp_path / "s.toml").write_text("[link]\nefficiency = 2\n")
    with pytest.raises(ScenarioError) as err:
        load_scenario(tmp_path / "s.toml", ["vm.memory_mib=1024"])
    assert err.value.source == str(tmp_path / "s.toml")


def test_an_override_of_a_whole_table_is_blamed_too():
    with pytest.raises(ScenarioError) as err:
        load_scenario(default_scenario_path(), ["link={efficiency = 2}"])
    assert err.value.source == "" and err.value.field == "link.efficiency"


def test_an_override_with_an_empty_field_is_refused(capsys):
    assert "expected section.key=value" in error_line(["predict", "--set", "..=1"], capsys)


def test_evacuate_refuses_a_set_into_a_link_the_fleet_lacks_as_sweeps_do(tmp_path, capsys):
    line = error_line(["evacuate", str(EXAMPLES / "evacuation.toml"), "--results", str(tmp_path),
                       "--set", "links.a1-nik.bandwidth_mbit_s=5"], capsys)
    assert "links.a1-nik.bandwidth_mbit_s" in line and "NAME one of: a1-nic" in line
    fleet = load_fleet(EXAMPLES / "evacuation.toml", ["links.a1-nic.bandwidth_mbit_s=5"])
    assert fleet.links["a1-nic"].bandwidth_mbit_s == 5.0


def test_evacuate_blames_an_override_not_the_fleet_file():
    with pytest.raises(ScenarioError) as err:
        load_fleet(EXAMPLES / "evacuation.toml", ["plan.max_concurrent=-1"])
    assert err.value.source == "" and err.value.field == "plan.max_concurrent"


@pytest.mark.parametrize("seed", ["-1", str(2**63)])
def test_a_seed_numpy_or_the_records_cannot_take_is_refused(seed, capsys, tmp_path):
    assert "--seed" in error_line(["predict", "--seed", seed], capsys)
    assert "--seed" in error_line(["evacuate", str(EXAMPLES / "evacuation.toml"), "--seed", seed,
                                   "--results", str(tmp_path)], capsys)


def test_a_results_folder_that_cannot_be_made_is_one_line(tmp_path, capsys):
    (tmp_path / "file").write_text("")
    line = error_line(["evacuate", str(EXAMPLES / "evacuation.toml"), "--results", str(tmp_path / "file")],
                      capsys)
    assert "Not a directory" in line


# ---------------------------------------------------------------------------------------------------
# budgets, before any work

SWEEP_BASE = {"base": {"vm": {"memory_mib": 256}}}


def test_a_sweep_past_its_runs_budget_is_refused_with_the_figure_and_the_limit(tmp_path):
    axis = {"field": "vm.memory_mib", "range": {"start": 1, "stop": 2, "num": 10**9}}
    huge = {**SWEEP_BASE, "axes": [axis]}
    with pytest.raises(ScenarioError) as err:
        sweep_from_dict(huge, tmp_path)
    assert err.value.value == 10**9 and f"max_runs = {SWEEP_RUNS}" in str(err.value)
    cube = {**SWEEP_BASE, "axes": [{"field": f, "range": {"start": 1, "stop": 2, "num": 1000}}
                                   for f in ("vm.memory_mib", "link.rtt_ms", "vm.dirty.rate_mib_s")]}
    with pytest.raises(ScenarioError, match="runs = 1000000000"):
        sweep_from_dict(cube, tmp_path)
    replicated = {**SWEEP_BASE, "axes": [{"field": "vm.memory_mib", "values": [1, 2]}], "replicates": 10**9}
    with pytest.raises(ScenarioError, match="runs = 2000000000"):
        sweep_from_dict(replicated, tmp_path)
    assert sweep_from_dict({**huge, "max_runs": 10**9}, tmp_path).axes[0].num == 10**9


def raw_fleet(count: int) -> dict:
    return {"links": {"n1": {}, "n2": {}}, "hosts": {"a": {"links": ["n1"]}, "b": {"links": ["n2"]}},
            "profiles": {"p": {}},
            "vms": [{"profile": "p", "count": count, "source": "a", "destination": "b"}]}


def test_a_fleet_sweep_counts_its_migrations(tmp_path):
    axis = {"field": "plan.max_concurrent", "range": {"start": 1, "stop": 9, "num": 1001}}
    with pytest.raises(ScenarioError, match="x 1000 VMs = 1001000 migrations"):
        sweep_from_dict({"fleet": raw_fleet(1000), "axes": [axis]}, tmp_path)


def test_a_fleet_past_its_vm_budget_is_refused_before_a_vm_is_built():
    raw = raw_fleet(10**9)
    with pytest.raises(ScenarioError) as err:
        fleet_from_dict(raw)
    assert err.value.field == "vms" and f"plan.max_vms = {FLEET_VMS}" in str(err.value)
    raw["vms"][0]["count"] = FLEET_VMS + 1
    raw["plan"] = {"max_vms": FLEET_VMS + 1}
    assert len(fleet_from_dict(raw).vms) == FLEET_VMS + 1


def test_other_tenants_load_past_the_events_budget_is_refused_before_the_run(capsys):
    argv = ["predict", "--set", 'port_profile.type="802.1Qbh"', "--set", "switch.background_load_per_s=1000",
            "--set", "link.bandwidth_mbit_s=10"]
    line = error_line(argv, capsys)
    assert "switch.background_load_per_s = 1000.0" in line and "budget of 1000000" in line
    assert "--max-events" in line


def test_the_events_budget_stops_a_run_and_a_flag_raises_it(capsys):
    s = scenario_from_dict({"port_profile": {"type": "802.1Qbh"}})
    with pytest.raises(ScenarioError, match="simulated events = 11: more than the budget of 10"):
        simulate(s, max_events=10)
    assert simulate(s, max_events=1000).record.migrated
    assert "simulated events" in error_line(["predict", "--set", 'port_profile.type="802.1Qbh"',
                                             "--max-events", "10"], capsys)


def test_an_overloaded_switch_is_stopped_at_its_backlog():
    # 1000/s at 30 ms each, one at a time: the backlog grows by ~967 requests a second
    s = scenario_from_dict({"port_profile": {"type": "802.1Qbh"}, "vm": {"memory_mib": 64},
                            "switch": {"service_time_ms": 30, "background_load_per_s": 1000}})
    with pytest.raises(ScenarioError) as err:
        predict(s)
    assert err.value.field in ("switch.background_load_per_s", "switch backlog")
    assert f"more than the {SWITCH_BACKLOG} waiting" in str(err.value)


# ---------------------------------------------------------------------------------------------------
# records that contradict themselves


def test_contradictions_finds_each_broken_invariant():
    good = MigrationRecord("id", "sim", converged=True, total_time_s=5.0, downtime_ms=10.0,
                           pause_window_ms=12.0, final_copy_ms=9.0, bytes_sent=1e9)
    assert contradictions(good.to_row()) == []
    for change, says in (({"total_time_s": math.inf}, "total_time_s"),
                         ({"pause_window_ms": 9.0}, "pause_window_ms"),
                         ({"final_copy_ms": 11.0}, "final_copy_ms"), ({"bytes_sent": math.inf}, "bytes_sent"),
                         ({"pause_window_ms": math.nan}, "pause_window_ms")):
        broken = contradictions(dataclasses.replace(good, **change).to_row())
        assert len(broken) == 1 and says in broken[0]
    # strict JSON's null is NaN; a record that never converged may have no total time
    row = json.loads(json.dumps({**good.to_row(), "converged": False, "total_time_s": None}))
    assert contradictions(row) == []


@pytest.mark.parametrize("keep_bytes", [0, 100])
def test_a_truncated_chunk_is_one_line_for_plot(tmp_path, capsys, keep_bytes):
    sweep = tmp_path / "tiny.toml"
    sweep.write_text('base = { vm = { memory_mib = 256 } }\n[[axes]]\nfield = "migration.max_downtime_ms"\n'
                     "values = [100, 300]\n")
    argv = ["sweep", str(sweep), "--workers", "1", "--quiet", "--no-plots", "--results", str(tmp_path)]
    assert main(argv) == 0
    chunk = next((tmp_path / "tiny" / "chunks").iterdir())
    chunk.write_bytes(chunk.read_bytes()[:keep_bytes])
    capsys.readouterr()
    assert "holds a chunk that cannot be read" in error_line(["plot", str(tmp_path / "tiny")], capsys)
