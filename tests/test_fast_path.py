"""The vectorised fast path against the SimPy engine, which stays the reference."""

import math
from pathlib import Path

import numpy as np
import pytest

from pausecast.models.files import scenario_from_dict
from pausecast.models.record import COLUMNS
from pausecast.sim import fast, predict
from pausecast.sim.fast import predict_many

from .conftest import make

# identity columns and strings are compared exactly, every number within 0.1%
EXACT = ("converged", "failure", "forced", "iterations", "scenario_id")
TIMES = [c for c in COLUMNS if c.endswith(("_s", "_ms")) or c in ("bytes_sent", "dirty_rate_pages_s")]


def random_scenario(rng: np.random.Generator):
    """A scenario the fast path takes: constant or hot/cold, any layout, link, cap, rule, overheads."""
    memory = float(rng.choice([64, 512, 2048, 4096, 16384]))
    zero, page = float(rng.choice([0.0, 0.2, 0.9])), int(rng.choice([4096, 65536]))
    dirty = {"model": "constant", "rate_mib_s": float(rng.uniform(0, 1500))}
    if rng.random() < 0.5:
        written = memory * (1 - zero)
        dirty = {"model": "hotcold", "hot_set_mib": float(rng.uniform(0.01, 1) * written),
                 "hot_rate_mib_s": float(rng.uniform(0, 3000)), "cold_rate_mib_s": float(rng.uniform(0, 200))}
    overheads = ({"profile": "none"} if rng.random() < 0.3 else
                 {name: float(rng.uniform(0, 500)) for name in ("begin_ms", "prepare_ms", "setup_ms",
                                                                "handshake_ms", "finish_ms", "resume_ms",
                                                                "confirm_ms", "announce_ms")})
    layout = str(rng.choice(["spread", "written-low"]))
    return scenario_from_dict({
        "vm": {"memory_mib": memory, "zero_page_fraction": zero, "zero_page_layout": layout,
               "page_size_bytes": page, "device_state_mib": float(rng.uniform(0, 10)), "dirty": dirty},
        "link": {"bandwidth_mbit_s": float(rng.choice([1000, 10000, 25000, 100000])),
                 "efficiency": float(rng.uniform(0.3, 1)), "rtt_ms": float(rng.uniform(0, 10)),
                 "socket_backlog_mib": float(rng.choice([0.0, 1.5, 4.0])),
                 "sender_mib_s": float(rng.choice([0.0, 0.0, 300.0, 3000.0])),
                 "final_copy_efficiency": float(rng.choice([0.0, 0.0, 0.6, 0.9])),
                 "final_copy_sender_mib_s": float(rng.choice([0.0, 0.0, 200.0, 2000.0]))},
        "migration": {"max_downtime_ms": float(rng.uniform(5, 3000)),
                      "bandwidth_mib_s": float(rng.choice([0, 0, 50, 400, 2000])),
                      "switchover_rule": str(rng.choice(["qemu", "pass-end"]))},
        "overheads": overheads})


def same(a: float, b: float) -> bool:
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    if math.isinf(a) or math.isinf(b):
        return a == b
    return a == pytest.approx(b, rel=1e-3, abs=1e-9)


def test_fast_path_agrees_with_the_simpy_engine_on_500_random_scenarios():
    rng = np.random.default_rng(2024)
    scenarios = [random_scenario(rng) for _ in range(500)]
    fast_records = predict_many(scenarios)
    verdicts = {True: 0, False: 0}
    for s, got in zip(scenarios, fast_records, strict=True):
        want = predict(s)
        for column in EXACT:
            assert getattr(got, column) == getattr(want, column), (column, s)
        for column in TIMES:
            assert same(getattr(got, column), getattr(want, column)), (column, s)
        verdicts[want.converged] += 1
    # the sample covers both verdicts in earnest
    assert min(verdicts.values()) > 50, verdicts


def test_a_migration_near_the_boundary_takes_thousands_of_syncs_on_both_engines():
    # 1 GbE moves 119.2 MiB/s; at 121 MiB/s pages are dirtied a little faster than they leave, but a
    # page dirtied again while pending is sent once, so QEMU's rule creeps under the threshold
    near = make(vm={"dirty": {"rate_mib_s": 120.97}}, link={"bandwidth_mbit_s": 1000},
                migration={"max_downtime_ms": 630.8})
    easy = [make(vm={"dirty": {"rate_mib_s": r}}) for r in (10, 100, 1000, 3000)]
    got = predict_many([*easy, near])
    want = predict(near)
    assert want.iterations > 1000
    assert (got[-1].iterations, got[-1].converged) == (want.iterations, want.converged)
    assert got[-1].total_time_s == pytest.approx(want.total_time_s, rel=1e-3)
    assert [r.iterations for r in got[:-1]] == [predict(s).iterations for s in easy]


@pytest.mark.parametrize("sections", [
    {"port_profile": {"type": "802.1Qbg"}},
    {"migration": {"timeout_s": 30}},
    {"vm": {"dirty": {"model": "trace", "path": "t.csv"}}},
], ids=["port profile", "timeout", "trace"])
def test_only_exact_cases_take_the_fast_path(sections, tmp_path):
    (tmp_path / "t.csv").write_text("t_s,dirty_pages\n1,100\n")
    scenario = scenario_from_dict(sections, base_dir=tmp_path)
    columns = fast.inputs(scenario, {})
    assert not fast.eligible(columns)
    with pytest.raises(ValueError, match="exact only"):
        predict_many([scenario])
    assert fast.eligible(fast.inputs(make(), {}))


def test_inputs_take_swept_columns_over_the_base():
    base = make(vm={"memory_mib": 1024})
    columns = fast.inputs(base, {"vm.memory_mib": np.array([512.0, 2048.0])})
    assert columns["vm.memory_mib"].tolist() == [512.0, 2048.0]
    assert columns["link.bandwidth_mbit_s"] == base.link.bandwidth_mbit_s
    out = fast.evaluate(columns, 2)
    # a bigger VM takes longer over the same link
    assert out["total_time_s"][1] > out["total_time_s"][0]


def identical(a, b) -> bool:
    return a == b or (isinstance(a, float) and math.isnan(a) and math.isnan(b))


# near the convergence boundary, one of each rule, dirty model and bound: 1 GbE sends 119.2 MiB/s
GBE = {"bandwidth_mbit_s": 1000}


@pytest.mark.parametrize("sections", [
    {"vm": {"dirty": {"rate_mib_s": 120.97}}, "link": GBE, "migration": {"max_downtime_ms": 630.8}},
    {"vm": {"dirty": {"rate_mib_s": 118.5}}, "link": GBE,
     "migration": {"max_downtime_ms": 50.0, "switchover_rule": "pass-end"}},
    # the hot set saturates, the cold rate nearly fills the link: progress slows, then stalls
    {"vm": {"dirty": {"model": "hotcold", "hot_set_mib": 32.0, "hot_rate_mib_s": 500.0,
                      "cold_rate_mib_s": 118.0}}, "link": GBE, "migration": {"max_downtime_ms": 630.8}},
    {"vm": {"dirty": {"rate_mib_s": 101.0}}, "link": {"bandwidth_mbit_s": 10000},
     "migration": {"bandwidth_mib_s": 100.0, "max_downtime_ms": 630.8}},
    # the data first, then the zero pages in a burst, then what was dirtied behind the walk
    {"vm": {"zero_page_fraction": 0.5, "zero_page_layout": "written-low", "dirty": {"rate_mib_s": 119.5}},
     "link": GBE, "migration": {"max_downtime_ms": 630.8}},
], ids=["qemu rule", "pass-end rule", "hot/cold stalls", "cap-bound", "written-low"])
def test_the_fast_path_gives_the_engines_own_numbers(sections):
    # The compiled loop does the engine's float operations in the engine's order (sim/compiled.py), and
    # the waits around it are added in the engine's order too: the numbers are equal, not merely close.
    # Near the boundary a migration takes hundreds to thousands of syncs, each computed from the one
    # before, where any difference would grow.
    scenario = make(**sections)
    want = predict(scenario)
    [got] = predict_many([scenario])
    assert want.iterations > 100
    for column in (*EXACT, *TIMES):
        assert identical(getattr(got, column), getattr(want, column)), column


def test_the_compiled_loop_is_cached_under_the_models_source_too(tmp_path, monkeypatch):
    # numba stamps a cached function with its own file only; the compiled loop is also made of the
    # models' rule, dirty models and elementwise primitives, so an edit there must miss the cache
    from pausecast.models import dirty, elementwise, switchover
    from pausecast.sim import compiled

    assert compiled._precopy._cache._impl.locator.get_source_stamp() == compiled._source_digest()
    for module in (switchover, dirty, elementwise):
        before = compiled._source_digest()
        edited = tmp_path / f"{module.__name__}.py"
        edited.write_bytes(Path(module.__file__).read_bytes() + b"\n# edited\n")
        monkeypatch.setattr(module, "__file__", str(edited))
        assert compiled._source_digest() != before, module.__name__
