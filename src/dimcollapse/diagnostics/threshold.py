"""The collapse threshold: an eigenvalue below COLLAPSE_THRESHOLD x the largest is a collapsed dimension.

Its own module so that the metric functions (rank, alpha-ReQ) and the catalogue that lists them can all
import it without a cycle. Every default ``rel_floor`` and every label that says "1e-6" reads it.
"""

COLLAPSE_THRESHOLD = 1e-6
THRESHOLD_TEXT = f"{COLLAPSE_THRESHOLD:.0e}".replace("e-0", "e-")  # "1e-6", for labels and captions

__all__ = ["COLLAPSE_THRESHOLD", "THRESHOLD_TEXT"]
