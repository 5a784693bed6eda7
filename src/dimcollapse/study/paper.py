"""The paper's number beside ours: rows of a study whose runs carry ``paper`` numbers (``paper_<metric>``
columns of results.json), one line per variant and metric with the mean measured value over seeds."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from dimcollapse.records import is_accuracy
from dimcollapse.records.row import Row, as_finite, as_number

PAPER_PREFIX = "paper_"


@dataclass(frozen=True)
class PaperRow:
    """One variant and metric: the paper's number, ours (mean over ``seeds`` finished runs), the gap."""

    variant: str
    metric: str
    paper: float | None
    measured: float | None
    seeds: int

    @property
    def difference(self) -> float | None:
        """measured - paper, in the paper's unit (points for accuracies); None when either is missing."""
        if self.paper is None or self.measured is None:
            return None
        return self.measured - self.paper


def in_paper_units(metric: str, value: float) -> float:
    """Accuracies (the accuracy catalogue's keys) are fractions in results and percent in the papers."""
    return 100.0 * value if is_accuracy(metric) else value


def paper_rows(rows: Sequence[Row]) -> list[PaperRow]:
    """Per variant (first-seen order) and paper metric: paper number and mean measured value of done runs."""
    order: list[tuple[str, str]] = []
    paper: dict[tuple[str, str], float | None] = {}
    measured: dict[tuple[str, str], list[float]] = {}
    for row in rows:
        for key, value in row.items():
            if not key.startswith(PAPER_PREFIX):
                continue
            cell = (str(row.get("variant", row.get("run_id", ""))), key.removeprefix(PAPER_PREFIX))
            if cell not in paper:
                order.append(cell)
                paper[cell] = as_number(value)
                measured[cell] = []
            ours = as_finite(row.get(cell[1]))
            if row.get("status") == "done" and ours is not None:
                measured[cell].append(in_paper_units(cell[1], ours))
    return [PaperRow(v, m, paper[(v, m)], _mean(measured[(v, m)]), len(measured[(v, m)])) for v, m in order]


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def format_paper_rows(rows: Sequence[PaperRow], table: str = "") -> list[str]:
    """Plain-text lines: variant, metric, paper, measured (seeds), measured - paper."""

    def num(v: float | None) -> str:
        return "-" if v is None else f"{v:.1f}" if abs(v) >= 10 else f"{v:.3g}"

    head = f"{'run':32s} {'metric':18s} {'paper':>8s} {'measured':>10s} {'diff':>7s}"
    lines = [f"paper vs measured ({table})" if table else "paper vs measured", head]
    for r in rows:
        diff = r.difference
        seeds = f" ({r.seeds})" if r.seeds > 1 else ""
        lines.append(
            f"{r.variant:32s} {r.metric:18s} {num(r.paper):>8s} {num(r.measured) + seeds:>10s} "
            f"{'-' if diff is None else f'{diff:+.1f}':>7s}"
        )
    return lines
