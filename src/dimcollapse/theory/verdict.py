"""A claim of the paper, the numbers measured for it, and whether it holds (for results.json and the page)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass
class Claim:
    """One checked statement: ``holds`` is computed from ``measured`` by the experiment, never typed in."""

    experiment: str
    claim: str
    measured: str
    holds: bool

    def to_dict(self) -> dict[str, Any]:
        """Plain dict for JSON."""
        return asdict(self)


def fmt(values: list[float] | tuple[float, ...], digits: int = 3) -> str:
    """Numbers as a short comma-separated list."""
    return ", ".join(f"{v:.{digits}g}" for v in values)
