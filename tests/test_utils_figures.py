"""utils/figures.py: one renderer, reproducible bytes, tight boxes and closing pyplot figures."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pytest
from matplotlib.figure import Figure

from dimcollapse.utils.figures import figure_bytes


def _figure() -> Figure:
    fig = Figure(figsize=(2, 2))
    ax = fig.add_subplot()
    ax.plot([0, 1, 2], [1, 0, 2])
    return fig


@pytest.mark.parametrize(("fmt", "magic"), [("png", b"\x89PNG"), ("svg", b"<?xml"), ("pdf", b"%PDF")])
def test_same_figure_gives_the_same_bytes(fmt: str, magic: bytes) -> None:
    a, b = figure_bytes(_figure(), fmt), figure_bytes(_figure(), fmt)
    assert a.startswith(magic) and a == b
    assert b"CreationDate" not in a and b"dc:date" not in a  # matplotlib writes these by default


def test_tight_crops_and_close_releases_pyplot_figures() -> None:
    fig = plt.figure(figsize=(4, 4))
    fig.add_subplot().plot([0, 1])
    number = fig.number
    loose = figure_bytes(fig, dpi=50)
    tight = figure_bytes(fig, dpi=50, tight=True, close=True)
    assert not plt.fignum_exists(number)
    width = lambda png: int.from_bytes(png[16:20], "big")  # noqa: E731 (IHDR width)
    assert width(tight) < width(loose) == 200
