"""A scenario's identity: the key that joins a prediction and a measurement.

It hashes the scenario's physics (every field but those declared `physics=False`: the name, how the
call is made), and of the physics only the fields whose value differs from the field's declared
default. So a field added with the default that reproduces the model before it changes no id, and
one field's term can be computed over a whole column of a sweep at once (`ids_of_columns`).

Scheme 2, the id of a scenario:

    key(path)      first 8 bytes, little-endian, of SHA-1(path), path as "vm.dirty.rate_mib_s"
    code(value)    a float: its IEEE-754 bits (-0.0 as 0.0); an int or bool: the integer modulo
                   2**64; a string: first 8 bytes, little-endian, of SHA-1(the string)
    term           mix(key(path) ^ code(value)), for each physics field not at its default
    id             the first 12 hex digits of mix(SCHEME ^ (sum of the terms modulo 2**64)), as
                   16 hex digits

where mix is SplitMix64's finaliser, a bijection of 64-bit words. The sum makes the id independent of
the order of fields. A scenario's id is not a secret: the hash only has to spread distinct
scenarios, which 48 bits do for the sweeps people run (two of a million points share an id with
odds of about 2e-3). Scheme 1, before December 2026, was SHA-1 of the physics' canonical JSON; its
ids do not join with these, and a sweep written with it is not resumed (runs/sweep.py).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import operator
import struct
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from .schema import is_physics, sections

ID_SCHEME = 2
ID_HEX_DIGITS = 12
_MASK = (1 << 64) - 1
# SplitMix64's finaliser (Steele, Lea and Flood 2014; the constants are Stafford's "Mix13")
_M1, _M2 = 0xBF58476D1CE4E5B9, 0x94D049BB133111EB
_SCHEME_WORD = ID_SCHEME * 0x9E3779B97F4A7C15 & _MASK


def id_of_text(canonical_json: str) -> str:
    """A short digest of a text (a sweep's key; not a scenario's id)."""
    return hashlib.sha1(canonical_json.encode()).hexdigest()[:12]


def scenario_id(scenario: Any) -> str:
    """`Scenario.scenario_id`: scheme 2 above, one scenario."""
    paths, defaults, leaves = _physics_leaves(type(scenario))
    total = 0
    for path, default, value in zip(paths, defaults, leaves(scenario), strict=True):
        if value != default:
            total += _term(path, value)
    return format(_mix(_SCHEME_WORD ^ (total & _MASK)), "016x")[:ID_HEX_DIGITS]


def ids_of_columns(base: Any, columns: Mapping[str, np.ndarray]) -> np.ndarray:
    """The ids of the scenarios that are `base` with each column's value at its path, point by point,
    as an (n, 12) array of ASCII hex digits: `scenario_id` over arrays, without a Python step per
    point. Each column holds its field's type (float64 for a float field, integers, strings), as
    models/sweep.py's design gives them."""
    paths, defaults, leaves = _physics_leaves(type(base))
    default_of = dict(zip(paths, defaults, strict=True))
    fixed = sum(_term(path, value) for path, default, value in zip(paths, defaults, leaves(base), strict=True)
                if path not in columns and value != default)
    n = len(next(iter(columns.values())))
    total = np.full(n, fixed & _MASK, dtype=np.uint64)
    for path, column in columns.items():
        if path not in default_of:
            continue  # a field that is not physics
        default = default_of[path]
        term = _mix_array(np.uint64(_key(path)) ^ _codes(column))
        total += np.where(column != default, term, np.uint64(0))
    words = _mix_array(np.uint64(_SCHEME_WORD) ^ total)
    # most significant byte first, each byte its two hex digits
    leading = words.astype(">u8").view(np.uint8).reshape(n, 8)[:, :ID_HEX_DIGITS // 2]
    digits = np.empty((n, ID_HEX_DIGITS), dtype=np.uint8)
    digits[:, 0::2] = _hex_digit(leading >> 4)
    digits[:, 1::2] = _hex_digit(leading & 15)
    return digits


def id_strings(digits: np.ndarray) -> list[str]:
    """`ids_of_columns`' digits as Python strings."""
    return digits.view(f"S{ID_HEX_DIGITS}").ravel().astype(str).tolist()


def _hex_digit(nibble: np.ndarray) -> np.ndarray:
    """ASCII "0"-"9", "a"-"f" of values 0-15 (a lookup table indexed by a million is slower)."""
    return nibble + np.uint8(ord("0")) + (nibble > 9) * np.uint8(ord("a") - ord("9") - 1)


def _mix(z: int) -> int:
    z = (z ^ (z >> 30)) * _M1 & _MASK
    z = (z ^ (z >> 27)) * _M2 & _MASK
    return z ^ (z >> 31)


def _mix_array(z: np.ndarray) -> np.ndarray:
    # numpy's unsigned arithmetic wraps modulo 2**64, as _mix's masks do
    z = (z ^ (z >> np.uint64(30))) * np.uint64(_M1)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(_M2)
    return z ^ (z >> np.uint64(31))


@functools.cache
def _key(path: str) -> int:
    return int.from_bytes(hashlib.sha1(path.encode()).digest()[:8], "little")


@functools.lru_cache(maxsize=4096)
def _string_code(value: str) -> int:
    return int.from_bytes(hashlib.sha1(value.encode()).digest()[:8], "little")


def _code(value: Any) -> int:
    if isinstance(value, str):
        return _string_code(value)
    if isinstance(value, float):
        # adding 0.0 turns -0.0 into 0.0: the same number has one code
        return struct.unpack("<Q", struct.pack("<d", value + 0.0))[0]
    return int(value) & _MASK


def _term(path: str, value: Any) -> int:
    # the type is part of the key: 1, 1.0 and True are equal keys of a dict but not the same code
    return _cached_term(path, value.__class__, value)


# a fleet's VMs share their profiles' values: a term is computed once for each
@functools.lru_cache(maxsize=1 << 16)
def _cached_term(path: str, _kind: type, value: Any) -> int:
    return _mix(_key(path) ^ _code(value))


def _codes(column: np.ndarray) -> np.ndarray:
    """`_code` of each value of a column."""
    kind = column.dtype.kind
    if kind == "f":
        return (column.astype(np.float64) + 0.0).view(np.uint64)
    if kind in "iub":
        return column.astype(np.int64).view(np.uint64)
    if kind in "UO":
        distinct, where = np.unique(column.astype(str), return_inverse=True)
        codes = np.array([_string_code(s) for s in distinct.tolist()], dtype=np.uint64)
        return codes[where.ravel()]
    raise TypeError(f"a column of dtype {column.dtype} is no scenario field's")


@functools.cache
def _physics_leaves(root: type) -> tuple[tuple[str, ...], tuple[Any, ...], Callable[[Any], tuple[Any, ...]]]:
    """The dotted paths of `root`'s physics scalar fields, their declared defaults, and a getter of
    their values in that order."""
    paths: list[str] = []
    defaults: list[Any] = []

    def walk(cls: type, prefix: str) -> None:
        nested = sections(cls)
        for f in dataclasses.fields(cls):
            if not is_physics(f):
                continue
            if f.name in nested:
                walk(nested[f.name], f"{prefix}{f.name}.")
            else:
                paths.append(prefix + f.name)
                defaults.append(f.default)

    walk(root, "")
    getter = operator.attrgetter(*paths)
    return tuple(paths), tuple(defaults), getter
