"""The one error type bad input raises: it names the field, the value and what is allowed."""

from __future__ import annotations

from pathlib import Path


class ScenarioError(ValueError):
    """A scenario (or any input file) is invalid. `str()` is a single line meant for the user."""

    def __init__(self, field: str, value: object, allowed: str, source: str = "") -> None:
        self.field = field
        self.value = value
        self.allowed = allowed
        self.source = source
        where = f"{source}: " if source else ""
        super().__init__(f"{where}{field} = {value!r}: {allowed}")


def read_text(path: Path, field: str) -> str:
    """An input file's text; a file that cannot be read, or is not UTF-8, is the one-line error."""
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ScenarioError(field, str(path), f"cannot be read ({exc.strerror})") from None
    except UnicodeDecodeError as exc:
        raise ScenarioError(field, str(path), f"is not UTF-8 text (byte {exc.start}: {exc.reason})") from None


def check_seed(seed: int) -> None:
    """numpy's generators take seeds >= 0 only; the record keeps the seed in an int64 column."""
    if seed < 0:
        raise ScenarioError("--seed", seed, "expected an integer >= 0")
    if seed >= 2**63:
        raise ScenarioError("--seed", seed, "at most 2^63 - 1 (the records' int64 seed column)")
