"""The one-line verdict, ``collapsing: yes/no (why)``, of a monitor's history or of one measurement.

``collapse_verdict(summary)`` reads only a monitor summary's keys (monitor.json), so the monitor, the
Tracker, the CLI and the report print the same line for the same run (an older monitor.json without the
scale signals gets the line from its ``warning`` flags). ``embedding_verdict(fields)`` judges one
measurement (``analyze``, a run's record, a checkpoint): collapsing when at least ``DEAD_SHARE`` (10%)
of the dimensions the N rows could show (N centred rows span at most N - 1 directions) carry no variance,
or the rows span one direction; a single measurement cannot show a fall, and the line says so.
``rows_le_dims(n, d)`` is the N <= D test every surface flags.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from dimcollapse.diagnostics.threshold import THRESHOLD_TEXT


def _ratio_text(last: Mapping[str, Any], key: str, best: Mapping[str, Any]) -> str | None:
    value, top = last.get(key), best.get(key)
    if not isinstance(value, (int, float)) or not isinstance(top, (int, float)) or top <= 0:
        return None
    return f"{key} {float(value) / float(top):.2f} x its best"


def _spread_text(last: Mapping[str, Any], output: str | None) -> str | None:
    if output is None:
        return None
    s, spectrum = last.get(f"std_norm_{output}"), last.get(f"spectrum_{output}")
    if not isinstance(s, (int, float)) or not isinstance(spectrum, list) or not spectrum:
        return None
    ideal = 1.0 / math.sqrt(len(spectrum))
    return f"std of normalised {output} {float(s) / ideal:.2f} x ideal 1/sqrt({len(spectrum)})"


def probe_note(summary: Mapping[str, Any]) -> str:
    """'' or the N <= D caveat of the summary's probe (erank and collapsed dims are bounded by N - 1)."""
    n, d = summary.get("probe_size"), summary.get("probe_dim")
    if isinstance(n, int) and isinstance(d, int) and n <= d:
        return f"; caution: the probe has {n} rows <= {d} dims, so the rank metrics are bounded by N - 1"
    return ""


def rows_le_dims(n: object, d: object) -> bool:
    """True when both are counts and n <= d (the probe cannot resolve every dimension)."""
    counts = all(isinstance(v, int) and not isinstance(v, bool) for v in (n, d))
    return counts and int(n) <= int(d)  # type: ignore[call-overload]


def _count(value: object) -> int | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return int(value)


DEAD_SHARE = 0.1  # a single measurement is called collapsing when this share of resolvable dims is dead


def embedding_verdict(fields: Mapping[str, Any]) -> str:
    """'collapsing: yes (why)' when the dims carrying no variance beyond what N rows cannot resolve
    (collapsed dims - (D - min(N - 1, D))) are >= DEAD_SHARE of min(N - 1, D) (and >= 2: a LayerNorm
    output always loses one), or erank < 1.5; else 'collapsing: no (...)'; reads n, d, erank,
    collapsed_dims."""
    n, d, dead = (_count(fields.get(k)) for k in ("n", "d", "collapsed_dims"))
    erank = fields.get("erank")
    if n is None or d is None or dead is None or not isinstance(erank, (int, float)) or n < 2:
        return "collapsing: unknown (no rank measurement)"
    room = min(n - 1, d)  # directions that N centred rows can span
    lost = max(0, dead - (d - room))
    note = ""
    if n <= d:
        note = f"; caution: {n} rows <= {d} dims, so at most {room} directions can show (N <= D)"
    if erank < 1.5:
        return f"collapsing: yes (complete: the rows span ~1 direction, erank {erank:.2f}){note}"
    dead_text = (
        f"{lost} of {room} resolvable dims carry no variance (eigenvalue < {THRESHOLD_TEXT} of the largest)"
    )
    if lost >= max(2.0, DEAD_SHARE * room):
        return f"collapsing: yes ({dead_text}; erank {erank:.1f}){note}"
    share = (
        f"{dead_text}, under the {DEAD_SHARE:.0%} that counts as collapse"
        if lost
        else f"all {room} resolvable dims carry variance"
    )
    return (
        f"collapsing: no ({share}; erank {erank:.1f}; one measurement: a fall over training shows in the "
        f"monitor or a checkpoint series){note}"
    )


def collapse_verdict(summary: Mapping[str, Any]) -> str:
    """'collapsing: yes (why)' when the last record warned or the run stopped, else 'collapsing: no (...)'."""
    history = summary.get("history") or []
    if not history:
        return "collapsing: unknown (no measurement recorded)"
    last, note = history[-1], probe_note(summary)
    step = last.get("step", "?")
    stopped = summary.get("stopped_at")
    if last.get("warning") or stopped is not None:
        reasons = last.get("warning_reasons") or [f"{summary.get('watch', 'the watched value')} fell"]
        where = f"stopped at step {stopped}" if stopped is not None else f"step {step}"
        return f"collapsing: yes ({where}: {'; '.join(reasons)}){note}"
    warmup = summary.get("warmup_steps")
    if isinstance(warmup, int) and isinstance(step, int) and step < warmup:
        return f"collapsing: no (step {step} is inside the {warmup}-step warm-up: no baseline yet){note}"
    output, best = summary.get("watched_output"), summary.get("baselines") or {}
    keys = [summary.get("watch", "")] + ([f"total_var_{output}"] if output else [])
    parts = [t for t in (_ratio_text(last, k, best) for k in keys) if t]
    spread = _spread_text(last, output)
    parts += [spread] if spread else []
    warned = [h.get("step") for h in history if h.get("warning")]
    if warned:
        parts.append(f"{len(warned)} earlier warning(s), last at step {warned[-1]}")
    return f"collapsing: no (step {step}: {', '.join(parts) or 'no warning'}){note}"


__all__ = ["DEAD_SHARE", "collapse_verdict", "embedding_verdict", "probe_note", "rows_le_dims"]
