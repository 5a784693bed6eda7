"""Shared benchmark machinery: interleaved timing, per-round ratios, host facts, atomic JSON results."""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dimcollapse.training.precision import cpu_flags
from dimcollapse.utils.atomic import atomic_write_json

# DIMCOLLAPSE_BENCH_RESULTS redirects the output (the test of --quick writes to a temporary folder)
RESULTS_DIR = Path(os.environ.get("DIMCOLLAPSE_BENCH_RESULTS", Path(__file__).resolve().parent / "results"))
_FLAGS_OF_INTEREST = ("avx2", "fma", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")


def interleaved(
    jobs: dict[str, Callable[[], Any]], rounds: int, clock: Callable[[], float] = time.perf_counter
) -> dict[str, list[float]]:
    """Seconds of every job in each of ``rounds`` rounds; one warm-up call each, then job after job per
    round, so that a busy spell of the shared host hits all contenders alike."""
    for fn in jobs.values():
        fn()
    times: dict[str, list[float]] = {name: [] for name in jobs}
    for _ in range(rounds):
        for name, fn in jobs.items():
            t = clock()
            fn()
            times[name].append(clock() - t)
    return times


def ratio_stats(num: list[float], den: list[float]) -> dict[str, float]:
    """min / median / max over rounds of num[i] / den[i] (each ratio from one round, measured together)."""
    r = [a / b for a, b in zip(num, den, strict=True)]
    return {"min": min(r), "median": statistics.median(r), "max": max(r)}


def host() -> dict[str, Any]:
    """CPU model, core count, relevant CPU flags and the load averages when the result was taken."""
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    flags = cpu_flags()
    try:
        load = list(os.getloadavg())
    except OSError:
        load = []
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "flags": [f for f in _FLAGS_OF_INTEREST if f in flags],
        "load_avg_1_5_15": load,
        "time_utc": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }


def fmt_ratio(s: dict[str, float]) -> str:
    """'median (min-max)' of a ratio_stats dict."""
    return f"{s['median']:.2f} ({s['min']:.2f}-{s['max']:.2f})"


def save(name: str, payload: dict[str, Any], quick: bool) -> Path:
    """Write results/<name>.json (results/quick/<name>.json for --quick runs) atomically."""
    path = RESULTS_DIR / ("quick" if quick else "") / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, {**payload, "host": host(), "quick": quick})
    return path


def load_cases(name: str, quick: bool) -> dict[str, Any]:
    """The "cases" of an earlier results/<name>.json ({} if absent or unreadable)."""
    path = RESULTS_DIR / ("quick" if quick else "") / f"{name}.json"
    try:
        return dict(json.loads(path.read_text()).get("cases", {}))
    except (OSError, ValueError):
        return {}
