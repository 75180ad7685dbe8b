"""The fuzzer: Hypothesis over the scenario, fleet and sweep schemas and over raw bytes as files, each
case run through the CLI's entry function in this process. Whatever the input, the command ends within
its time budget with either exit 0 and records that keep their invariants (models/record.py
`contradictions`) or one line on stderr and a non-zero exit: never a traceback, never a hang."""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import io
import itertools
import json
import math
import shutil
import signal
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import tomli_w
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pausecast.cli import main
from pausecast.models.fieldpaths import leaf_fields
from pausecast.models.fleet import PlanSpec
from pausecast.models.record import contradictions
from pausecast.models.scenario import SwitchSpec
from pausecast.models.schema import field_kind
from pausecast.runs.store import load_results

# seconds one case may take: a hang fails the case
CASE_BUDGET_S = 10
# the cases each target has run in this session, for the closing table
TRIED: Counter[str] = Counter()

FUZZ = settings(max_examples=800, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.filter_too_much])


class Hang(Exception):
    pass


def _alarm(signum: int, frame: Any) -> None:
    raise Hang(f"no answer within {CASE_BUDGET_S} s")


def run_case(target: str, argv: list[str]) -> tuple[int, str, str]:
    """`pausecast ARGV` in this process: (exit code, stdout, stderr). A traceback or a hang fails."""
    TRIED[target] += 1
    out, err = io.StringIO(), io.StringIO()
    previous = signal.signal(signal.SIGALRM, _alarm)
    # and again every second after: code that swallows the first (a SimPy process) cannot hide a hang
    signal.setitimer(signal.ITIMER_REAL, CASE_BUDGET_S, 1.0)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main(argv)
            except SystemExit as exc:  # argparse's own refusals
                code = exc.code if isinstance(exc.code, int) else 2
    except Exception as exc:
        raise AssertionError(f"{type(exc).__name__} ({exc}) from pausecast {' '.join(argv)} "
                             f"with {_input_of(argv)!r}") from exc
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    stderr = err.getvalue()
    if code != 0:
        lines = stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("pausecast: "), (argv, stderr)
    return code, out.getvalue(), stderr


def _input_of(argv: list[str]) -> bytes:
    path = Path(argv[1])
    return path.read_bytes()[:3000] if path.is_file() else b""


def assert_consistent(rows: list[dict[str, Any]]) -> None:
    for row in rows:
        assert not contradictions(row), (contradictions(row), row)


# ---------------------------------------------------------------------------------------------------
# values: plausible ones (so that cases reach the engines), and the nasty ones

NASTY = st.sampled_from([0, -1, -0.5, 1e308, -1e308, 5e-324, 1e-300, 10**18, 2**63 - 1, -(2**63),
                         math.nan, math.inf, -math.inf, 1e30, 1e15])
WRONG_TYPES = st.one_of(st.text(max_size=6), st.booleans(), st.lists(st.integers(-3, 3), max_size=2),
                        st.dictionaries(st.sampled_from(["x", "rate_mib_s"]), st.integers(0, 9), max_size=1))
ANY_NUMBER = st.one_of(st.floats(), st.integers(-(2**63), 2**63 - 1))


def plausible(f) -> st.SearchStrategy:
    """A value the field's rule accepts, mostly (a cross-field rule may still refuse it)."""
    kind, meta = field_kind(f), f.metadata
    if meta.get("choices"):
        return st.sampled_from(meta["choices"])
    if kind is bool:
        return st.booleans()
    if kind is str:
        return st.just("")
    most = meta["most"].value if meta.get("most") else math.inf
    hi = min(1e4 if meta.get("hi") is None else meta["hi"], most)
    if kind is int:
        return st.sampled_from([n for n in (1, 2, 3, 64, 512, 4096) if n <= hi])
    lo = max(meta.get("lo") or 0.0, meta["least"].value if meta.get("least") else 0.0)
    return st.floats(lo, hi, exclude_min=bool(meta.get("lo_open")) and lo == meta.get("lo"),
                     exclude_max=bool(meta.get("hi_open")))


SCALES = st.sampled_from(["linear", "linear", "log", "log", "cubic"])
SCENARIO_FIELDS = {path: f for path, f in leaf_fields().items()
                   if path not in ("vm.dirty.path", "overheads.profile")}
UNKNOWN_KEYS = st.sampled_from(["bogus", "vm.bogus", "vm.dirty.bogus", "link.speed", "overheads.setup",
                                "switch.capacity.x", "vm.memory_mib.x"])


def put(data: dict[str, Any], path: str, value: Any) -> None:
    """Sets a dotted path; a path through a value that is not a table replaces it with one."""
    *parents, leaf = path.split(".")
    for part in parents:
        if not isinstance(data.get(part), dict):
            data[part] = {}
        data = data[part]
    data[leaf] = value


# what a case spoils: one thing at most, so that it reaches as far as that one thing lets it; "none"
# (plausible values only) weighs as much as all the spoilt kinds together
def spoils(*kinds: str) -> st.SearchStrategy:
    return st.sampled_from(["none"] * len(kinds) + list(kinds))


BAD_VALUES = st.one_of(NASTY, NASTY, WRONG_TYPES, ANY_NUMBER)


def tables(data: st.DataObject, fields: dict[str, Any], base: dict[str, Any], most: int) -> dict[str, Any]:
    """`base` with a few of `fields` given plausible values."""
    table = copy.deepcopy(base)
    for path in data.draw(st.lists(st.sampled_from(sorted(fields)), unique=True, max_size=most)):
        put(table, path, data.draw(plausible(fields[path])))
    return table


def spoil_value(data: st.DataObject, table: dict[str, Any], fields: dict[str, Any]) -> None:
    put(table, data.draw(st.sampled_from(sorted(fields))), data.draw(BAD_VALUES))


def toml_text(data: dict[str, Any]) -> str:
    return tomli_w.dumps(data)


SET_ITEMS = st.one_of(
    st.builds(lambda path, value: f"{path}={value}", st.sampled_from(sorted(SCENARIO_FIELDS)),
              st.sampled_from(["2", "-1", "1e308", "nan", "inf", "[1, 2]", "{}", '"x"', "", "0x10",
                               "1e-300", "true"])),
    st.sampled_from(["", "=", "..=1", "vm", "vm.=1", "vm.memory_mib.x=1", "link={}", "vm=3"]),
    st.text(max_size=12))
BAD_SEEDS = st.sampled_from([-1, 2**63, 2**64])


@st.composite
def trace_csv(draw) -> bytes:
    """A dirty trace: its rows as numbers (huge, NaN, decreasing times...) or any bytes."""
    numbers = st.one_of(st.floats(), st.sampled_from(["nan", "inf", "-inf", "x", ""]))
    if draw(st.booleans()):
        return draw(st.binary(max_size=64))
    rows = draw(st.lists(st.tuples(numbers, numbers), max_size=4))
    return ("t_s,dirty_pages\n" + "".join(f"{t},{p}\n" for t, p in rows)).encode()


PLAUSIBLE_TRACE = st.lists(st.tuples(st.floats(0.01, 5), st.floats(0, 1e5)), min_size=1, max_size=4).map(
    lambda rows: ("t_s,dirty_pages\n" + "".join(
        f"{t},{p}\n" for t, p in zip(itertools.accumulate(r[0] for r in rows), (r[1] for r in rows),
                                     strict=True))).encode())


@st.composite
def overheads_profile(draw) -> bytes:
    if draw(st.booleans()):
        return draw(st.binary(max_size=64))
    costs = draw(st.dictionaries(st.sampled_from(["setup_ms", "confirm_ms", "resume_ms", "bogus"]),
                                 st.one_of(NASTY, WRONG_TYPES), min_size=1, max_size=2))
    return toml_text({"overheads": costs} if draw(st.booleans()) else costs).encode()


# ---------------------------------------------------------------------------------------------------
# predict


@FUZZ
@given(data=st.data())
def test_predict_never_breaks(data):
    spoil = data.draw(spoils("value", "value", "key", "seed", "set", "trace", "profile"))
    scenario = tables(data, SCENARIO_FIELDS, {}, most=6)
    argv = ["--json", "--seed", str(data.draw(BAD_SEEDS if spoil == "seed" else st.integers(0, 3)))]
    if spoil == "value":
        spoil_value(data, scenario, SCENARIO_FIELDS)
    elif spoil == "key":
        put(scenario, data.draw(UNKNOWN_KEYS), data.draw(ANY_NUMBER))
    elif spoil == "set":
        argv += ["--set", data.draw(SET_ITEMS)]
    with tempfile.TemporaryDirectory() as tmp:
        if spoil == "trace" or data.draw(st.integers(0, 5)) == 0:
            trace = trace_csv() if spoil == "trace" else PLAUSIBLE_TRACE
            (Path(tmp) / "trace.csv").write_bytes(data.draw(trace))
            put(scenario, "vm.dirty.model", "trace")
            put(scenario, "vm.dirty.path", "trace.csv")
        if spoil == "profile":
            (Path(tmp) / "profile.toml").write_bytes(data.draw(overheads_profile()))
            put(scenario, "overheads.profile", "profile.toml")
        path = Path(tmp) / "s.toml"
        path.write_text(toml_text(scenario))
        code, out, _ = run_case("predict", ["predict", str(path), *argv])
        if code == 0:
            assert_consistent([json.loads(out)])


# ---------------------------------------------------------------------------------------------------
# evacuate

FLEET = {
    "name": "f",
    "links": {"n1": {}, "n2": {"bandwidth_mbit_s": 1000.0}},
    "hosts": {"a": {"links": ["n1"], "switch": "sw"}, "b": {"links": ["n2"], "switch": "sw"}},
    "switches": {"sw": {}},
    "profiles": {"p": {"vm": {"memory_mib": 512.0}}},
    "plan": {},
    "vms": [{"profile": "p", "count": 2, "source": "a", "destination": "b"}],
}
FLEET_FIELDS = {
    **{f"links.n1.{name}": leaf_fields()[f"link.{name}"]
       for name in ("bandwidth_mbit_s", "efficiency", "rtt_ms")},
    **{f"switches.sw.{f.name}": f for f in dataclasses.fields(SwitchSpec)},
    **{f"plan.{f.name}": f for f in dataclasses.fields(PlanSpec) if not f.name.startswith("max_")},
    **{f"profiles.p.{path}": f for path, f in SCENARIO_FIELDS.items()
       if not path.startswith(("link.", "switch.", "name"))},
}
FLEET_UNKNOWN_KEYS = st.sampled_from(["bogus", "hosts.a.bogus", "plan.bogus", "profiles.p.link.rtt_ms",
                                      "links.n1.speed", "switches.sw.x"])
BAD_COUNTS = st.sampled_from([0, -1, 10**9, 2**63 - 1, 1.5, "3", True])
FLEET_SETS = st.sampled_from([
    "links.typo.bandwidth_mbit_s=5", "hosts.c.links=['n1']", "plan.max_concurrent=-1", "vms=[]", "links.n1=3",
    "plan.max_vms=1", "plan.max_events=10", "switches.sw.capacity=0", "links.n1.bandwidth_mbit_s=1e-300",
    "profiles.p.vm.memory_mib=nan", "=", "plan", "profiles.q.vm.memory_mib=1"])


# a link's changes of bandwidth: mostly valid (down, back, slower, faster, at times within a run of
# seconds), sometimes out of range
LINK_CHANGES = st.lists(st.fixed_dictionaries({
    "at_s": st.one_of(st.floats(0.0, 30.0), st.sampled_from([-1.0, 1e308, math.nan, 0.0])),
    "bandwidth_mbit_s": st.one_of(st.just(0.0), st.floats(0.001, 1e5),
                                  st.sampled_from([1e-300, -5.0, 1e308, math.nan]))}), max_size=4)


@settings(FUZZ, max_examples=150)
@given(data=st.data())
def test_evacuate_never_breaks(data):
    spoil = data.draw(spoils("value", "value", "key", "count", "seed", "set"))
    fleet = tables(data, FLEET_FIELDS, FLEET, most=4)
    if data.draw(st.booleans()):
        fleet["links"]["n1"]["changes"] = data.draw(LINK_CHANGES)
    fleet["vms"][0]["count"] = data.draw(BAD_COUNTS if spoil == "count" else st.integers(1, 3))
    if data.draw(st.booleans()):
        put(fleet, "profiles.p.port_profile.type", data.draw(st.sampled_from(["802.1Qbg", "802.1Qbh"])))
    seed = data.draw(BAD_SEEDS if spoil == "seed" else st.integers(0, 3))
    if spoil == "value":
        spoil_value(data, fleet, FLEET_FIELDS)
    elif spoil == "key":
        put(fleet, data.draw(FLEET_UNKNOWN_KEYS), 1)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "f.toml"
        path.write_text(toml_text(fleet))
        argv = ["evacuate", str(path), "--seed", str(seed), "--results", str(Path(tmp) / "results")]
        if spoil == "set":
            argv += ["--set", data.draw(FLEET_SETS)]
        code, _, _ = run_case("evacuate", argv)
        if code == 0:
            records = pd.read_parquet(Path(tmp) / "results" / "f" / "records.parquet")
            assert_consistent(records.to_dict("records"))


# ---------------------------------------------------------------------------------------------------
# sweep (small: sizes are a few points, or far past the budget)

BAD_SIZES = st.sampled_from([0, -1, 10**9, 2**62, 1.5, "2"])
BAD_AXIS_FIELDS = st.sampled_from(["name", "overheads.profile", "vm", "vm.bogus", "", "links.x.y"])
SWEPT = {path: f for path, f in SCENARIO_FIELDS.items() if path != "vm.dirty.model"}
FLEET_SWEPT = {path: f for path, f in FLEET_FIELDS.items() if field_kind(f) in (int, float)}
FLEET_BAD_AXIS_FIELDS = st.sampled_from(["links.typo.bandwidth_mbit_s", "vms.0.count", "plan", "name",
                                         "profiles.q.vm.memory_mib", "hosts.a.links"])


@settings(FUZZ, max_examples=300)
@given(data=st.data())
def test_sweep_never_breaks(data):
    spoil = data.draw(spoils("base", "field", "values", "size", "replicates", "samples", "seed", "key"))
    of_fleet = data.draw(st.integers(0, 3)) == 0
    fields = FLEET_SWEPT if of_fleet else SWEPT
    field = data.draw((FLEET_BAD_AXIS_FIELDS if of_fleet else BAD_AXIS_FIELDS) if spoil == "field"
                      else st.sampled_from(sorted(fields)))
    values = BAD_VALUES if spoil == "values" else plausible(fields[field]) if field in fields else ANY_NUMBER
    size = BAD_SIZES if spoil == "size" else st.integers(1, 3)
    kind = data.draw(st.sampled_from(["values", "range", "sample"]))
    if kind == "values":
        axis = {"field": field, "values": data.draw(st.lists(values, min_size=1, max_size=3))}
    elif kind == "range":
        axis = {"field": field, "range": {"start": data.draw(values), "stop": data.draw(values),
                                          "num": data.draw(size), "scale": data.draw(SCALES)}}
    else:
        axis = {"field": field, "sample": {"low": data.draw(values), "high": data.draw(values),
                                           "scale": data.draw(SCALES)}}
    base_fields = FLEET_FIELDS if of_fleet else SCENARIO_FIELDS
    base = tables(data, base_fields, FLEET if of_fleet else {"vm": {"memory_mib": 256.0}}, most=3)
    if spoil == "base":
        spoil_value(data, base, base_fields)
    replicates = data.draw(BAD_SIZES if spoil == "replicates" else st.integers(1, 3))
    sweep: dict[str, Any] = {"fleet" if of_fleet else "base": base, "axes": [axis], "replicates": replicates}
    if kind == "sample" or spoil == "samples":
        sweep["sampling"] = {"method": data.draw(st.sampled_from(["lhs", "random"])),
                             "samples": data.draw(BAD_SIZES if spoil == "samples" else st.integers(1, 3))}
    if data.draw(st.booleans()):
        sweep["seed"] = data.draw(st.just(-1) if spoil == "seed" else st.integers(0, 2**63 - 1))
    if spoil == "key":
        sweep[data.draw(st.sampled_from(["bogus", "max_runs"]))] = data.draw(BAD_SIZES)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "s.toml"
        path.write_text(toml_text(sweep))
        results = Path(tmp) / "results"
        code, _, _ = run_case("sweep", ["sweep", str(path), "--workers", "1", "--no-plots", "--quiet",
                                        "--results", str(results)])
        if code == 0:
            assert_consistent(load_results(results / "s").to_dict("records"))


# ---------------------------------------------------------------------------------------------------
# raw bytes as every kind of file

RAW = st.one_of(st.binary(max_size=200), st.binary(max_size=40).map(lambda b: b"\xff\xfe" + b),
                st.text(max_size=80).map(str.encode))


@settings(FUZZ, max_examples=300)
@given(raw=RAW, target=st.sampled_from(["predict", "evacuate", "sweep", "plot"]))
def test_raw_bytes_never_break(raw, target):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "input.toml"
        path.write_bytes(raw)
        results = str(Path(tmp) / "results")
        argv = {"predict": ["predict", str(path)],
                "evacuate": ["evacuate", str(path), "--results", results],
                "sweep": ["sweep", str(path), "--workers", "1", "--no-plots", "--quiet",
                          "--results", results],
                "plot": ["plot", tmp]}[target]
        if target == "plot":
            path.rename(Path(tmp) / "manifest.json")
        code, _, _ = run_case(f"raw bytes: {target}", argv)
        assert code != 0 or target == "predict"


# ---------------------------------------------------------------------------------------------------
# every field at every extreme: the corners a random search reaches only by luck, each tried once

EXTREMES = (1e308, -1e308, 1e30, 1e-300, 5e-324, -1, 0, math.nan, math.inf, -math.inf, 2**63 - 1, "x", [1],
            True, {})


def test_every_scenario_field_at_every_extreme(tmp_path):
    path = tmp_path / "s.toml"
    for field, value in itertools.product(sorted(SCENARIO_FIELDS), EXTREMES):
        scenario: dict[str, Any] = {}
        if field.startswith("switch."):
            put(scenario, "port_profile.type", "802.1Qbh")  # so that the switch is simulated
        put(scenario, field, value)
        path.write_text(toml_text(scenario))
        code, out, _ = run_case("predict: extremes", ["predict", str(path), "--json"])
        if code == 0:
            assert_consistent([json.loads(out)])


FLEET_EXTREMES = (1e308, 1e-300, math.nan, -1, 2**63 - 1)


def test_every_fleet_field_at_every_extreme(tmp_path):
    path, results = tmp_path / "f.toml", tmp_path / "results"
    numeric = sorted(p for p, f in FLEET_FIELDS.items() if field_kind(f) in (int, float))
    for field, value in [*itertools.product(numeric, FLEET_EXTREMES),
                         *(("vms.0.count", n) for n in (0, -1, 10**9, 2**63 - 1))]:
        fleet = copy.deepcopy(FLEET)
        put(fleet, "profiles.p.port_profile.type", "802.1Qbh")
        if field == "vms.0.count":
            fleet["vms"][0]["count"] = value
        else:
            put(fleet, field, value)
        path.write_text(toml_text(fleet))
        code, _, _ = run_case("evacuate: extremes", ["evacuate", str(path), "--results", str(results)])
        if code == 0:
            assert_consistent(pd.read_parquet(results / "f" / "records.parquet").to_dict("records"))


SWEEP_EXTREMES = (1e308, 1e-300, math.nan, math.inf, -1, 0)
SIZE_EXTREMES = (0, -1, 10**9, 2**63 - 1)


def test_every_sweep_size_and_axis_at_every_extreme(tmp_path):
    path, results = tmp_path / "s.toml", tmp_path / "results"
    base = {"vm": {"memory_mib": 256.0}}
    fields = ("vm.memory_mib", "vm.dirty.rate_mib_s", "link.bandwidth_mbit_s", "link.rtt_ms",
              "migration.max_downtime_ms", "link.socket_backlog_mib", "vm.device_state_mib")
    cases = [{"axes": [{"field": f, "values": [v]}]} for f in fields for v in SWEEP_EXTREMES]
    cases += [{"axes": [{"field": f, "range": {"start": 1.0, "stop": v, "num": 2}}]}
              for f in fields for v in SWEEP_EXTREMES]
    cases += [{"axes": [{"field": "vm.memory_mib", "range": {"start": 1.0, "stop": 2.0, "num": n}}]}
              for n in SIZE_EXTREMES]
    cases += [{"axes": [{"field": "vm.memory_mib", "values": [1.0]}], "replicates": n} for n in SIZE_EXTREMES]
    cases += [{"axes": [{"field": "vm.memory_mib", "sample": {"low": 1.0, "high": 2.0}}],
               "sampling": {"samples": n}} for n in SIZE_EXTREMES]
    cases += [{"axes": [{"field": f, "range": {"start": 1.0, "stop": 2.0, "num": 1000}}
                        for f in fields[:3]]}]
    for case in cases:
        path.write_text(toml_text({"base": base, **case}))
        shutil.rmtree(results, ignore_errors=True)
        code, _, _ = run_case("sweep: extremes", ["sweep", str(path), "--workers", "1", "--no-plots",
                                                  "--quiet", "--results", str(results)])
        if code == 0:
            assert_consistent(load_results(results / "s").to_dict("records"))


@pytest.fixture(scope="module", autouse=True)
def _tally():
    yield
    print("\nfuzzer cases tried: " + ", ".join(f"{target} {n}" for target, n in sorted(TRIED.items())))
