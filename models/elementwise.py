"""Arithmetic that means the same on Python floats and on numpy arrays.

The pre-copy rule and the dirty models are written once: the SimPy engine calls them with one
migration's floats, the fast path with whole arrays of migrations. Floats take Python's own `min`,
`max`, `math.floor` (cheap inside the engine's loop), arrays the matching ufuncs; both round alike, so
a migration computes to the same bits either way.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

# an exact class test, not isinstance: this runs several times per sync inside the SimPy engine
_ARRAY = np.ndarray


def minimum(a: Any, b: Any) -> Any:
    if a.__class__ is _ARRAY or b.__class__ is _ARRAY:
        return np.minimum(a, b)
    return b if b < a else a  # Python's min(a, b)


def maximum(a: Any, b: Any) -> Any:
    if a.__class__ is _ARRAY or b.__class__ is _ARRAY:
        return np.maximum(a, b)
    return b if b > a else a  # Python's max(a, b)


def floor(x: Any) -> Any:
    return np.floor(x) if x.__class__ is _ARRAY else math.floor(x)


def where(condition: Any, if_true: Any, if_false: Any) -> Any:
    """Both branches are already evaluated: guard a division by choosing its divisor, not its result."""
    if condition.__class__ is _ARRAY or if_true.__class__ is _ARRAY or if_false.__class__ is _ARRAY:
        return np.where(condition, if_true, if_false)
    return if_true if condition else if_false
