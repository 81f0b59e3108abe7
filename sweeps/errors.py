"""User-facing errors (kept free of heavy imports so the CLI starts fast)."""

from __future__ import annotations


class SpecError(ValueError):
    """A sweep spec is invalid; ``problems`` lists ``(field path, reason)`` pairs."""

    def __init__(self, source: str, problems: list[tuple[str, str]]) -> None:
        self.source = source
        self.problems = problems
        lines = "\n".join(f"  - {field}: {reason}" for field, reason in problems)
        super().__init__(f"invalid sweep spec {source}:\n{lines}")

    def __reduce__(self) -> tuple:
        # Ray copies and pickles a trial's exception: rebuild it from both arguments
        return (type(self), (self.source, self.problems))


class ClusterUnreachable(ConnectionError):
    """No Ray answers at the address a run was given (``sweeps.ray_address.check``); ``source``
    names the address and where it came from (``--address X`` or ``RAY_ADDRESS=X``)."""

    def __init__(self, source: str, reason: str) -> None:
        self.source = source
        self.reason = reason
        super().__init__(f"{source}: {reason}")
