"""Scenario ids (models/identity.py): the documented scheme, the same over arrays as one by one, and
what an id must and must not depend on."""

import dataclasses
import hashlib
import struct

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from pausecast.models.fieldpaths import get_value, leaf_fields, with_values
from pausecast.models.files import scenario_from_dict
from pausecast.models.identity import id_strings, ids_of_columns
from pausecast.models.scenario import Scenario
from pausecast.models.schema import field_kind, is_physics

MASK = 2**64 - 1


def splitmix64_finaliser(z: int) -> int:
    # written from Steele, Lea and Flood's SplitMix64 (the finaliser of java.util.SplittableRandom),
    # not from the module
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) % 2**64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) % 2**64
    return z ^ (z >> 31)


def sha1_word(text: str) -> int:
    return int.from_bytes(hashlib.sha1(text.encode()).digest()[:8], "little")


def documented_id(fields: dict) -> str:
    """Scheme 2 as identity's docstring states it, from a {path: value} of the non-default physics."""
    total = 0
    for path, value in fields.items():
        if isinstance(value, str):
            code = sha1_word(value)
        elif isinstance(value, float):
            code = struct.unpack("<Q", struct.pack("<d", 0.0 if value == 0 else value))[0]
        else:
            code = int(value) % 2**64
        total += splitmix64_finaliser(sha1_word(path) ^ code)
    scheme = (2 * 0x9E3779B97F4A7C15) % 2**64
    return f"{splitmix64_finaliser(scheme ^ (total % 2**64)):016x}"[:12]


PHYSICS = {path: f for path, f in leaf_fields().items() if is_physics(f)}


def non_default(s: Scenario) -> dict:
    return {p: get_value(s, p) for p, f in PHYSICS.items() if get_value(s, p) != f.default}


def test_a_scenarios_id_is_the_documented_hash_of_its_non_default_physics():
    s = scenario_from_dict({"name": "x", "vm": {"memory_mib": 8192, "vcpus": 4, "dirty": {"model": "hotcold",
                            "hot_set_mib": 512, "hot_rate_mib_s": 900, "cold_rate_mib_s": 3}},
                            "link": {"bandwidth_mbit_s": 1000}, "migration": {"max_downtime_ms": 50}})
    fields = non_default(s)
    assert {"vm.memory_mib", "vm.vcpus", "vm.dirty.model", "link.bandwidth_mbit_s"} <= set(fields)
    assert s.scenario_id == documented_id(fields)
    assert Scenario().scenario_id == documented_id(non_default(Scenario()))


def test_a_field_at_its_default_is_not_part_of_the_id():
    # what lets a later version add a field (at the default that keeps today's model) without changing
    # every stored id
    bare = scenario_from_dict({"vm": {"memory_mib": 2048}})
    spelled = scenario_from_dict({"vm": {"memory_mib": 2048, "zero_page_fraction": 0.0,
                                         "device_state_mib": 0.0},
                                  "link": {"socket_backlog_mib": 0.0, "efficiency": 1.0}})
    assert bare.scenario_id == spelled.scenario_id
    other = scenario_from_dict({"vm": {"memory_mib": 2048, "device_state_mib": 1.0}})
    assert bare.scenario_id != other.scenario_id


def test_the_name_and_the_call_flags_are_not_physics():
    a = scenario_from_dict({"name": "a"})
    b = scenario_from_dict({"name": "b", "migration": {"persistent": True, "undefine_source": True}})
    assert a.scenario_id == b.scenario_id


def test_minus_zero_is_zero():
    s = Scenario()
    assert s.replace(vm=dataclasses.replace(s.vm, device_state_mib=-0.0)).scenario_id == s.scenario_id


# a value for each physics field, within what the schema allows (ranges are checked elsewhere: the id
# only needs values of the field's type)
def value_for(path: str) -> st.SearchStrategy:
    f = PHYSICS[path]
    if f.metadata.get("choices"):
        return st.sampled_from(f.metadata["choices"])
    kind = field_kind(f)
    if kind is float:
        return st.floats(min_value=0.0, max_value=1e6, allow_nan=False)
    if kind is int:
        return st.integers(min_value=1, max_value=4096)
    if kind is bool:
        return st.booleans()
    # numpy's fixed-width strings drop trailing NULs, as a sweep's columns would: no field takes one
    return st.text(st.characters(blacklist_characters="\x00"), max_size=8)


@st.composite
def swept(draw) -> tuple[dict, int]:
    paths = draw(st.lists(st.sampled_from(sorted(PHYSICS)), min_size=1, max_size=4, unique=True))
    n = draw(st.integers(min_value=1, max_value=6))
    return {p: draw(st.lists(value_for(p), min_size=n, max_size=n)) for p in paths}, n


@settings(max_examples=150, deadline=None)
@given(swept())
def test_ids_over_columns_are_the_scenarios_own(case):
    values, n = case
    base = scenario_from_dict({"vm": {"memory_mib": 1024}, "migration": {"max_downtime_ms": 120}})
    columns = {p: np.array(v, dtype={float: np.float64, int: np.int64, bool: np.bool_, str: np.str_}
                           [field_kind(PHYSICS[p])]) for p, v in values.items()}
    expected = [with_values(base, {p: v[i] for p, v in values.items()}).scenario_id for i in range(n)]
    assert id_strings(ids_of_columns(base, columns)) == expected


@settings(max_examples=100, deadline=None)
@given(st.sampled_from(sorted(PHYSICS)), st.data())
def test_changing_any_one_physics_field_changes_the_id(path, data):
    s = Scenario()
    value = data.draw(value_for(path).filter(lambda v: v != get_value(s, path)))
    assert with_values(s, {path: value}).scenario_id != s.scenario_id


def test_ids_spread_over_a_sweep():
    # 200,000 distinct points, 48 bits: a shared id would be a 1-in-a-million event (n**2 / 2**49)
    n = 200_000
    columns = {"vm.dirty.rate_mib_s": np.linspace(1.0, 500.0, n), "link.bandwidth_mbit_s": np.full(n, 1000.0)}
    ids = ids_of_columns(Scenario(), columns)
    assert len(np.unique(ids.view("S12"))) == n
    assert id_strings(ids[:3]) == [with_values(Scenario(), {"vm.dirty.rate_mib_s": float(v),
                                                            "link.bandwidth_mbit_s": 1000.0}).scenario_id
                                   for v in columns["vm.dirty.rate_mib_s"][:3]]
