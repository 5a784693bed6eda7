"""A claim of the paper, the numbers measured for it, and whether it holds (for results.json and the page)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypedDict


class ClaimDict(TypedDict):
    """A checked claim as results.json holds it (and the report's toy-theory table reads it)."""

    experiment: str
    claim: str
    measured: str
    holds: bool


@dataclass
class Claim:
    """One checked statement: ``holds`` is computed from ``measured`` by the experiment, never typed in."""

    experiment: str
    claim: str
    measured: str
    holds: bool

    def to_dict(self) -> ClaimDict:
        """Plain dict for JSON."""
        return {
            "experiment": self.experiment,
            "claim": self.claim,
            "measured": self.measured,
            "holds": self.holds,
        }


def fmt(values: list[float] | tuple[float, ...], digits: int = 3) -> str:
    """Numbers as a short comma-separated list."""
    return ", ".join(f"{v:.{digits}g}" for v in values)
