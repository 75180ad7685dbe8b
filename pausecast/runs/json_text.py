"""Strict JSON, the one way a record, summary or manifest becomes text: NaN and infinity become null.
Kept apart from the store so that the planners' commands print JSON without loading pyarrow."""

from __future__ import annotations

import json
import math
from typing import Any


def strict_json(obj: Any) -> Any:
    """NaN and infinity (not measured, never, none migrated) become null, at any depth: JSON has
    neither, and Python's json module would write tokens other readers refuse."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {str(k): strict_json(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [strict_json(v) for v in obj]
    return obj


def json_text(obj: Any, indent: int | None = 2) -> str:
    """The one way a record, summary or manifest becomes JSON text."""
    return json.dumps(strict_json(obj), indent=indent) + "\n"
