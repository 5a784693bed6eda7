"""A matplotlib figure as file bytes: the one renderer every layer's figures go through.

Identical figures give identical bytes (no creation date, fixed SVG ids), so reruns do not rewrite
unchanged files and tests can compare them.
"""

from __future__ import annotations

import io
from typing import Any

NO_DATE: dict[str, dict[str, Any]] = {"svg": {"Date": None}, "pdf": {"CreationDate": None}}


def figure_bytes(
    fig: Any, fmt: str = "png", dpi: int = 120, *, tight: bool = False, close: bool = False
) -> bytes:
    """``fig`` rendered as ``fmt`` (png, svg, pdf) bytes without a creation date; optionally bbox-tight
    and closed afterwards (figures made with pyplot must be closed, or pyplot keeps them alive)."""
    import matplotlib

    buf = io.BytesIO()
    with matplotlib.rc_context({"svg.hashsalt": "dimcollapse"}):  # fixed SVG element ids
        fig.savefig(
            buf, format=fmt, dpi=dpi, metadata=NO_DATE.get(fmt), bbox_inches="tight" if tight else None
        )
    if close:
        import matplotlib.pyplot as plt

        plt.close(fig)
    return buf.getvalue()
