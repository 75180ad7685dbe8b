"""`models.switchover`'s pre-copy loop compiled by numba, for the fast path (sim/fast.py).

numba compiles the models' own code, not a copy of it: switchover's rule functions, PrecopyState's
properties and the dirty models' `distinct_pages` are registered with numba as they are. Only the four
primitives of `models.elementwise` get numba versions, their branch for Python numbers: numba cannot
compile the array test in front of it. A migration is then the SimPy engine's sequence of IEEE double
operations on one migration's numbers, in the engine's order, and ends on the same bits as the engine's
Python floats (numba neither reorders nor fuses float operations without fastmath).

Each migration's PrecopyState is a record of a numpy structured array, which the compiled rule updates
in place. A dirty model is a record too, read at each sync as a named tuple of its class's fields: the
rule reads `sweeps` with a default, which numba answers for a named tuple but not for a record.

numba caches the compiled loop on disk (next to this file, or in the user's cache directory when that
is read-only; NUMBA_CACHE_DIR overrides both), stamped with the source of this module and of the models
modules it compiles: a change to the rule is compiled afresh, never served from a stale cache.
"""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
import math
import typing
from collections import namedtuple
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from numba import literal_unroll, njit, types
from numba.core import caching
from numba.extending import overload, overload_attribute, overload_method

from ..models import dirty as dirty_models
from ..models import elementwise as ew
from ..models import switchover as rule
from ..models.scenario import MigrationSpec

# the dirty models the fast path takes
DIRTY_MODELS = (dirty_models.ConstantDirty, dirty_models.HotColdDirty)
# the scenario's switchover rules: the loop is compiled once for each, with the rule's name a
# constant, so that `rule == "pass-end"` is settled at compile time instead of compared at every sync
RULES: tuple[str, ...] = next(f.metadata["choices"] for f in dataclasses.fields(MigrationSpec)
                              if f.name == "switchover_rule")
# Migrations whose loops take turns on the core. Each sync waits on the one before (a chain of about
# ten dependent divisions); the syncs of another migration do not, and the core overlaps such chains.
IN_FLIGHT = 3
_NUMPY_TYPES = {int: np.int64, float: np.float64, bool: np.bool_}


def record_dtype(cls: type) -> np.dtype:
    """A dataclass's fields as a numpy structured type."""
    hints = typing.get_type_hints(cls)
    return np.dtype([(f.name, _NUMPY_TYPES[hints[f.name]]) for f in dataclasses.fields(cls)])


def as_records(obj: Any, n: int) -> np.ndarray:
    """`n` records from a dataclass instance whose fields are arrays of n migrations' values or one
    value they share."""
    out = np.empty(n, dtype=record_dtype(type(obj)))
    for name in out.dtype.names:
        out[name] = getattr(obj, name)
    return out


def precopy(state: rule.PrecopyState, dirty: Any, rule_name: str, rate_bytes_s: Any, threshold_b: Any,
            interval_s: Any, now_s: Any, n: int) -> tuple[rule.PrecopyState, np.ndarray, np.ndarray]:
    """The SimPy engine's pre-copy loop (sim/engine.py `MigrationRun._perform`, no timeout) for each of
    `n` migrations, from its starting state and time until it switches over or stalls. Arguments are
    arrays of the migrations' values or one value they share. Returns the final states (as one state
    of arrays), the times then, and which migrations switched over."""
    if rule_name not in RULES:
        raise ValueError(f"switchover rule {rule_name!r} is not one of {RULES}")
    states, dirty_records = as_records(state, n), as_records(dirty, n)
    rate, threshold, interval, now = (np.array(np.broadcast_to(values, (n,)), dtype=np.float64)
                                      for values in (rate_bytes_s, threshold_b, interval_s, now_s))
    switched = np.zeros(n, dtype=np.bool_)
    _precopy(states, dirty_records, rule_name, rate, threshold, interval, now, switched)
    return rule.PrecopyState(**{name: states[name] for name in states.dtype.names}), now, switched


# -- elementwise's primitives for numba: their branch for Python numbers -------------------------------


@overload(ew.minimum)
def _minimum(a, b):
    return lambda a, b: b if b < a else a


@overload(ew.maximum)
def _maximum(a, b):
    return lambda a, b: b if b > a else a


@overload(ew.floor)
def _floor(x):
    return lambda x: math.floor(x)


@overload(ew.where)
def _where(condition, if_true, if_false):
    return lambda condition, if_true, if_false: if_true if condition else if_false


# -- the models' own functions, properties and methods -------------------------------------------------


def _jitable(function: Callable, inline: str = "never") -> Callable:
    """`function` as it is, for numba, compiled for the constants it is given (a rule's name)."""
    def typer(*args):
        return function
    # numba holds an overload's typer to the signature of what it returns
    typer.__signature__ = inspect.signature(function)
    overload(function, prefer_literal=True, inline=inline)(typer)
    return function


for _function in (rule.time_to_next_sync, rule.walk_wire_bytes, rule.send, rule.sync,
                  rule.below_threshold, rule.stalled):
    _jitable(_function)

_STATE_FIELDS = record_dtype(rule.PrecopyState).names
# a dirty model inside numba: a named tuple of its class's fields
_ROWS = {cls: namedtuple(cls.__name__, record_dtype(cls).names) for cls in DIRTY_MODELS}
_ROW_OF_FIELDS = {row._fields: row for row in _ROWS.values()}
_CLASS_OF_ROW = {row: cls for cls, row in _ROWS.items()}


def _model_class(typ: types.Type) -> type | None:
    """The models class a numba type stands for, if any."""
    if isinstance(typ, types.Record):
        return rule.PrecopyState if tuple(typ.fields) == _STATE_FIELDS else None
    if isinstance(typ, types.BaseNamedTuple):
        return _CLASS_OF_ROW.get(typ.instance_class)
    return None


def _register_members() -> None:
    """The properties and methods of the state and dirty model classes, for the numba types standing
    for them: one registration per name (numba keeps one per type and name), which finds the class
    from the type."""
    members: dict[tuple[type, str], Any] = {}
    numba_types = {rule.PrecopyState: types.Record, **dict.fromkeys(DIRTY_MODELS, types.BaseNamedTuple)}
    for cls, numba_type in numba_types.items():
        for name, member in vars(cls).items():
            if isinstance(member, property) or (inspect.isfunction(member) and not name.startswith("_")):
                members[(numba_type, name)] = member
    for (numba_type, name), member in members.items():
        if isinstance(member, property):
            overload_attribute(numba_type, name)(_property_typer(name))
        else:
            overload_method(numba_type, name)(_method_typer(name, member))


def _property_typer(name: str) -> Callable:
    def typer(self):
        cls = _model_class(self)
        return None if cls is None else vars(cls)[name].fget
    return typer


def _method_typer(name: str, method: Callable) -> Callable:
    def typer(self, *args):
        cls = _model_class(self)
        return None if cls is None else vars(cls)[name]
    # the classes share a method's signature (the DirtyModel protocol's), which numba wants the typer to have
    typer.__signature__ = inspect.signature(method)
    return typer


_register_members()


def _fields_from(record, k):
    """(numba only) Fields k, k + 1, ... of a record, as a tuple."""


@overload(_fields_from)
def _fields_from_typer(record, k):
    if not isinstance(k, types.IntegerLiteral):
        return None
    names = list(record.fields)[k.literal_value:]
    if not names:
        return lambda record, k: ()
    name, after = names[0], k.literal_value + 1
    return lambda record, k: (record[name], *_fields_from(record, after))


def _dirty_model(record):
    """(numba only) The dirty model a record of its class's fields stands for."""


@overload(_dirty_model)
def _dirty_model_typer(record):
    row = _ROW_OF_FIELDS.get(tuple(record.fields))
    if row is None:
        return None
    return lambda record: row(*_fields_from(record, 0))


# -- the loop --------------------------------------------------------------------------------------------


def _turn(state, dirty, rule_name, rate, threshold, interval):
    """The engine's loop body: send until the rule's next sync, sync, then the stall test. Returns the
    time spent sending and whether the migration stalled."""
    step = rule.time_to_next_sync(state, rule_name, rate, threshold, interval)
    rule.send(state, step, rate)
    rule.sync(state, dirty)
    return step, rule.stalled(state, threshold, dirty.stationary_after_s)


def _loops(states, dirty, rule_name, rate, threshold, interval, now, switched):
    """The engine's loop, `while not below_threshold: turn` until a stall, for every migration,
    IN_FLIGHT of them taking turns: `slot_row` holds the migration each slot runs (n: none left)."""
    n = len(states)
    slot_row = np.arange(min(IN_FLIGHT, n))
    next_row = running = len(slot_row)
    while running:
        for slot in range(len(slot_row)):
            i = slot_row[slot]
            if i == n:
                continue
            state = states[i]
            if rule.below_threshold(state, threshold[i]):
                switched[i] = True
            else:
                step, stalled = _turn(state, _dirty_model(dirty[i]), rule_name, rate[i], threshold[i],
                                      interval[i])
                now[i] = now[i] + step
                if not stalled:
                    continue
            slot_row[slot] = next_row
            if next_row < n:
                next_row += 1
            else:
                running -= 1


_jitable(_turn, inline="always")
_jitable(_loops)


def _loops_for_each_rule(states, dirty, rule_name, rate, threshold, interval, now, switched):
    for name in literal_unroll(RULES):
        if rule_name == name:
            _loops(states, dirty, name, rate, threshold, interval, now, switched)


# -- numba's disk cache, stamped with the models' source as well ----------------------------------------


def _source_digest() -> bytes:
    """This module's source and that of the models modules it compiles."""
    digest = hashlib.sha256()
    for path in (__file__, rule.__file__, ew.__file__, dirty_models.__file__):
        digest.update(Path(path).read_bytes())
    return digest.digest()


class _Stamped:
    """A cache locator whose stamp is _source_digest: numba's own covers the compiled function's file
    only, and would serve a stale rule after a change in models/."""

    def get_source_stamp(self) -> bytes:
        return _SOURCE_DIGEST


class _CacheImpl(caching.CompileResultCacheImpl):
    # numba's own order: NUMBA_CACHE_DIR if set, else next to the source, else the user's cache
    _locator_classes: ClassVar[list[type]] = [
        type(locator.__name__, (_Stamped, locator), {}) for locator in (
            caching.UserProvidedCacheLocator, caching.InTreeCacheLocator, caching.UserWideCacheLocator)]


class _Cache(caching.FunctionCache):
    _impl_class = _CacheImpl


_SOURCE_DIGEST = _source_digest()
_precopy = njit(_loops_for_each_rule)
# what njit(cache=True) does, with the stamped locators
_precopy._cache = _Cache(_loops_for_each_rule)
