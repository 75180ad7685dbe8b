"""The one error type bad input raises: it names the field, the value and what is allowed."""


class ScenarioError(ValueError):
    """A scenario (or any input file) is invalid. `str()` is a single line meant for the user."""

    def __init__(self, field: str, value: object, allowed: str, source: str = "") -> None:
        self.field = field
        self.value = value
        self.allowed = allowed
        self.source = source
        where = f"{source}: " if source else ""
        super().__init__(f"{where}{field} = {value!r}: {allowed}")
