"""Sweep files: the design they describe, their seeds, and one-line errors for bad ones."""

import math
import textwrap
from pathlib import Path

import numpy as np
import pytest

from pausecast.cli import main
from pausecast.models.fieldpaths import with_values
from pausecast.models.sweep import (
    design,
    fleet_at,
    load_sweep,
    point_ids,
    point_values,
    replicate_seeds,
    scenario_at,
    sweep_from_dict,
)

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def sweep(**data):
    data.setdefault("base", {})
    return sweep_from_dict(data, base_dir=EXAMPLES)


def test_grid_is_the_product_with_the_first_axis_slowest():
    s = sweep(axes=[{"field": "link.bandwidth_mbit_s", "values": [1000, 10000]},
                    {"field": "migration.max_downtime_ms", "range": {"start": 50, "stop": 2000, "num": 3,
                                                                      "scale": "log"}}])
    cols = design(s, entropy=0)
    # by hand: 2 x 3 points; the log range is 50, sqrt(50 x 2000) = 316.23, 2000
    assert cols["link.bandwidth_mbit_s"].tolist() == [1000.0] * 3 + [10000.0] * 3
    assert cols["migration.max_downtime_ms"] == pytest.approx([50, 316.227766, 2000] * 2)


def test_linear_range_and_typed_values():
    s = sweep(axes=[{"field": "vm.vcpus", "values": [1, 4]},
                    {"field": "vm.dirty.rate_mib_s", "range": {"start": 0, "stop": 300, "num": 4}},
                    {"field": "migration.switchover_rule", "values": ["qemu", "pass-end"]}])
    cols = design(s, entropy=0)
    assert len(cols["vm.vcpus"]) == 2 * 4 * 2
    assert sorted(set(cols["vm.dirty.rate_mib_s"].tolist())) == [0.0, 100.0, 200.0, 300.0]
    point = point_values(cols, 0)
    # values come back as the scenario's own types: an int field stays int, a float field float
    assert (type(point["vm.vcpus"]), type(point["vm.dirty.rate_mib_s"])) == (int, float)
    assert scenario_at(s.scenario, cols, 3).migration.switchover_rule == "pass-end"


def test_latin_hypercube_puts_one_sample_in_every_slice_of_every_axis():
    n = 50
    s = sweep(axes=[{"field": "link.efficiency", "sample": {"low": 0.1, "high": 1.0}},
                    {"field": "vm.dirty.rate_mib_s", "sample": {"low": 10, "high": 1000, "scale": "log"}}],
              sampling={"method": "lhs", "samples": n})
    cols = design(s, entropy=42)
    # the n equal slices of [0.1, 1] and of [log 10, log 1000]: each must be hit exactly once
    linear = np.floor((cols["link.efficiency"] - 0.1) / 0.9 * n).astype(int)
    log = np.floor((np.log(cols["vm.dirty.rate_mib_s"]) - math.log(10)) / math.log(100) * n).astype(int)
    assert sorted(linear) == list(range(n))
    assert sorted(log) == list(range(n))


def test_random_samples_stay_in_bounds_and_cross_the_grid():
    s = sweep(axes=[{"field": "link.bandwidth_mbit_s", "values": [1000, 10000, 25000]},
                    {"field": "link.rtt_ms", "sample": {"low": 0.1, "high": 5}}],
              sampling={"method": "random", "samples": 40})
    cols = design(s, entropy=7)
    assert len(cols["link.rtt_ms"]) == 120
    assert cols["link.rtt_ms"].min() >= 0.1 and cols["link.rtt_ms"].max() <= 5
    # every grid cell gets the same draws
    draws = cols["link.rtt_ms"].reshape(3, 40)
    assert (draws == draws[0]).all()
    assert len(set(draws[0].tolist())) == 40


def test_seed_fixes_the_samples_and_other_seeds_change_them():
    s = sweep(axes=[{"field": "link.rtt_ms", "sample": {"low": 0.1, "high": 5}}],
              sampling={"method": "lhs", "samples": 10})
    assert design(s, 3)["link.rtt_ms"].tolist() == design(s, 3)["link.rtt_ms"].tolist()
    assert design(s, 3)["link.rtt_ms"].tolist() != design(s, 4)["link.rtt_ms"].tolist()


def test_replicate_seeds_follow_seedsequence_spawn():
    # the documented scheme, written out: SeedSequence(entropy) spawns [sampling, replicates]; the
    # second spawns one child per replicate; a seed is its first 64-bit word shifted to 63 bits
    replicates = np.random.SeedSequence(99).spawn(2)[1]
    expected = [int(child.generate_state(1, np.uint64)[0]) >> 1 for child in replicates.spawn(3)]
    assert replicate_seeds(3, 99).tolist() == expected
    # more replicates keep the first ones: a sweep can be extended
    assert replicate_seeds(5, 99).tolist()[:3] == expected
    assert len(set(replicate_seeds(100, 99).tolist())) == 100


def test_point_ids_are_the_scenarios_own_ids():
    s = sweep(base="busy-database.toml",
              axes=[{"field": "vm.dirty.hot_set_mib", "values": [256, 1024.5]},
                    {"field": "migration.switchover_rule", "values": ["qemu", "pass-end"]},
                    {"field": "port_profile.vnics", "values": [1, 3]},
                    {"field": "link.rtt_ms", "sample": {"low": 0.1, "high": 5}}],
              sampling={"samples": 3})
    cols = design(s, entropy=5)
    expected = [with_values(s.scenario, point_values(cols, i)).scenario_id for i in range(24)]
    assert point_ids(s.scenario, cols) == expected
    assert len(set(expected)) == 24


def test_fleet_axes_build_checked_fleets():
    s = load_sweep(EXAMPLES / "sweep-evacuation.toml")
    cols = design(s, entropy=s.seed)
    fleets = [fleet_at(s, cols, i) for i in range(len(cols["plan.max_per_source_host"]))]
    assert [f.plan.max_per_source_host for f in fleets] == [1, 1, 2, 2, 4, 4]
    assert {f.links["rack-a-up"].bandwidth_mbit_s for f in fleets} == {10000, 40000}


def test_every_example_sweep_loads():
    for path in sorted(EXAMPLES.glob("sweep-*.toml")):
        s = load_sweep(path)
        assert design(s, entropy=s.seed if s.seed is not None else 0), path


def axis(field: str, *lines: str) -> str:
    return "\n".join(["[[axes]]", f'field = "{field}"', *lines])


RTT = axis("link.rtt_ms", "values = [1]")
SAMPLED_RTT = axis("link.rtt_ms", "sample = {low = 1, high = 2}")
BAD = [
    ("unknown top-level key", "axis = []", "axis ="),
    ("no axes", "base = {}", "axes ="),
    ("not a field", axis("vm.dirty.rate", "values = [1]"), "axes[0].field"),
    ("out of range", axis("migration.max_downtime_ms", "values = [300, -5]"), "axes[0].values[1]"),
    ("wrong type", axis("vm.vcpus", "values = [1.5]"), "axes[0].values[0]"),
    ("bad choice", axis("port_profile.type", 'values = ["802.1Qbx"]'), "axes[0].values[0]"),
    ("range of strings", axis("migration.switchover_rule", "range = {start = 1, stop = 2, num = 2}"),
     "axes[0].range"),
    ("log from zero", axis("link.rtt_ms", 'range = {start = 0, stop = 2, num = 2, scale = "log"}'),
     "axes[0].range.start"),
    ("no num", axis("link.rtt_ms", "range = {start = 1, stop = 2}"), "axes[0].range.num"),
    ("two kinds", axis("link.rtt_ms", "values = [1]", "range = {start = 1, stop = 2, num = 2}"), "axes[0] ="),
    ("sample without sampling", SAMPLED_RTT, "sampling ="),
    ("sampling without sampled axes", f"[sampling]\nsamples = 3\n{RTT}", "sampling ="),
    ("bad method", f'[sampling]\nmethod = "sobol"\nsamples = 3\n{SAMPLED_RTT}', "sampling.method"),
    ("low above high", "[sampling]\nsamples = 3\n" + axis("link.rtt_ms", "sample = {low = 2, high = 1}"),
     "axes[0].sample.high"),
    ("no replicates", f"replicates = 0\n{RTT}", "replicates"),
    ("swept twice", f"{RTT}\n{RTT}", "axes[1].field"),
    ("a profile name", axis("overheads.profile", 'values = ["none"]'), "axes[0].field"),
    ("bad folder name", f'name = "a/b"\n{RTT}', "name ="),
    ("hot set larger than memory at some point",
     'base = "busy-database.toml"\n' + axis("vm.memory_mib", "values = [16384, 1024]"),
     "vm.dirty.hot_set_mib"),
    ("bad inline base", f"[base.vm]\nmemory_mib = -1\n{RTT}", "base.vm.memory_mib"),
    ("a fleet path that adds a link",
     'fleet = "evacuation.toml"\n' + axis("links.nope.rtt_ms", "values = [1]"), "axes[0].field"),
    ("not TOML", "[[axes]\n", "TOML"),
]


@pytest.mark.parametrize(("what", "body", "names"), BAD, ids=[b[0] for b in BAD])
def test_bad_sweep_files_get_one_line_naming_the_field(tmp_path, capsys, what, body, names):
    text = body if body.startswith(("base", "fleet")) or "[base" in body else f"base = {{}}\n{body}"
    path = tmp_path / "bad.toml"
    path.write_text(textwrap.dedent(text))
    # relative paths in the bad files name the examples
    for example in ("busy-database.toml", "evacuation.toml"):
        (tmp_path / example).write_text((EXAMPLES / example).read_text())
    assert main(["sweep", str(path), "--workers", "1", "--results", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert names in err, err
    assert not (tmp_path / "out").exists()
