"""Write the benchmark tables of benchmarks/README.md from benchmarks/results/*.json (diagnostics, step, loop,
family_step).

python benchmarks/tables.py [--results DIR] [--readme benchmarks/README.md] [--print]
The tables replace the text between the markers <!-- tables:begin --> and <!-- tables:end -->.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS_DIR

from dimcollapse.utils.atomic import atomic_write_text

BEGIN, END = "<!-- tables:begin -->", "<!-- tables:end -->"


def _r(s: dict[str, float] | None) -> str:
    return "-" if not s else f"{s['median']:.2f} ({s['min']:.2f}-{s['max']:.2f})"


def _host(h: dict[str, Any] | None) -> str:
    if not h:
        return ""
    load = ", ".join(f"{v:.1f}" for v in h.get("load_avg_1_5_15", []))
    return f"{h.get('time_utc', '')}, {h.get('cpu', '')} ({', '.join(h.get('flags', []))}), load {load}"


def spectrum_table(cases: dict[str, Any]) -> list[str]:
    """One table per spectrum case: contender, seconds, contender / ours, accuracy; ours / floor."""
    out: list[str] = []
    for name in ("spectrum_512", "spectrum_256"):
        c = cases.get(name)
        if not c:
            continue
        out += [f"**{c['case']}** ({c['clock']}; {_host(c.get('host'))})", ""]
        out += [
            "| contender | median s | time / ours: median (min-max) | max rel. error |",
            "| --- | ---: | ---: | ---: |",
        ]
        secs = c["seconds_median"]
        ours_err = c["max_rel_error"]["ours"]
        out.append(f"| **ours** (`covariance_spectrum`) | {secs['ours']:.3f} | 1 | {ours_err:.1e} |")
        for k, s in c["other_over_ours"].items():
            err = c["max_rel_error"].get(k)
            err_s = "-" if err is None else f"{err:.1e}"
            out.append(f"| {k} | {secs[k]:.3f} | {_r(s)} | {err_s} |")
        out += ["", f"ours / floor (float64 syrk): {_r(c['ours_over_floor'])} (target <= 1.15)", ""]
    s = cases.get("stream")
    if s:
        out += [
            f"**{s['case']}**: {s['seconds']:.1f} s, extra peak memory {s['peak_extra_gib']:.3f} GiB, "
            f"max deviation from the planted eigenvalues {s['max_rel_dev_from_planted']:.1e}.",
            "",
        ]
    return out


def lid_table(cases: dict[str, Any]) -> list[str]:
    """LID contenders with ratios, agreement and the approximate engines' recall / error; the 1M case."""
    out: list[str] = []
    c = cases.get("lid")
    if c:
        out += [f"**{c['case']}** (wall; {_host(c.get('host'))})", ""]
        out += [
            "| contender | median s | time / ours: median (min-max) | agreement with ours | recall "
            "| gmean LID error |",
            "| --- | ---: | ---: | --- | ---: | ---: |",
        ]
        for k, s in c["other_over_ours"].items():
            agree = c["median_rel_diff_vs_ours"].get(k)
            q = c["approximate_quality"].get(k)
            agree_s = "-" if agree is None else f"median rel. diff {agree:.1e}"
            recall = "-" if not q else f"{q['recall']:.4f}"
            err = "-" if not q else f"{q['gmean_rel_error']:.2%}"
            out.append(f"| {k} | {c['seconds_median'][k]:.2f} | {_r(s)} | {agree_s} | {recall} | {err} |")
        out.append("")
    for name in ("knn_64", "knn_64_2t", "knn_128"):
        c = cases.get(name)
        if c:
            secs = c["seconds_median"]
            out += [
                f"**{c['case']}** ({c['clock']}; {_host(c.get('host'))}): ours {secs['ours_exact']:.2f} s, "
                f"faiss IndexFlatL2 {secs['faiss_flat']:.2f} s; faiss flat / ours "
                f"{_r(c['other_over_ours']['faiss_flat'])} (target >= 1); max relative LID difference "
                f"{c['max_rel_diff_vs_faiss']:.1e}.",
                "",
            ]
    m = cases.get("lid_1m")
    if m and "sets" in m:
        out += [f"**{m['case']}** ({_host(m.get('host'))}); target: {m['target']}", ""]
        out += [
            "| data | seconds | gmean LID | standard error | 95% interval | intrinsic dim. |",
            "| --- | ---: | ---: | ---: | --- | ---: |",
        ]
        for name, v in m["sets"].items():
            lo, hi = v["ci95"]
            dim = v.get("intrinsic_dimension") or "-"
            out.append(
                f"| {name} | {v['seconds']:.1f} | {v['gmean']:.3f} | {v['rel_se']:.2%} | {lo:.3f}-{hi:.3f} "
                f"| {dim} |"
            )
        out.append("")
    return out


def step_table(step: dict[str, Any]) -> list[str]:
    """Engine step ratios and term shares."""
    if not step:
        return []
    out = [
        f"**Training step**, {step['recipe']}, batch {step['batch']}, {step['threads']} threads, "
        f"{step['rounds']} interleaved rounds ({_host(step.get('host'))})",
        "",
        "| ratio | median (min-max) |",
        "| --- | ---: |",
    ]
    out += [f"| {k} | {_r(s)} |" for k, s in step["ratios"].items()]
    out += [f"| {k} | {_r(s)} |" for k, s in step["term_shares"].items()]
    return [*out, ""]


def family_step_table(fam: dict[str, Any]) -> list[str]:
    """Per method: what its step holds, median seconds, engine step / bare forward+backward."""
    if not fam:
        return []
    cases = fam.get("cases", {})
    batch = sorted({c["batch"] for c in cases.values()})
    load = ", ".join(f"{v:.1f}" for v in fam.get("load_avg_at_start", []))
    out = [
        f"**Engine step / bare forward+backward** of the same backbone + projector on the same batch, per "
        f"fmnist recipe (batch {'/'.join(map(str, batch))} per view, {fam['threads']} thread(s), "
        f"{fam['rounds']} interleaved rounds, one process, {fam.get('clock', 'wall')} time; load at start "
        f"{load}; {_host(fam.get('host'))})",
        "",
        "| recipe | objective | views | momentum enc. | queue rows | bare s | engine s | engine / bare |",
        "| --- | --- | --- | --- | ---: | ---: | ---: | ---: |",
    ]
    for method, c in cases.items():
        sec = c["seconds_median"]
        out.append(
            f"| {method} | {c['objective']} | {c['views']} | {'yes' if c['momentum_encoder'] else 'no'} | "
            f"{c['queue_rows']} | {sec['bare']:.3f} | {sec['engine']:.3f} | {_r(c['engine_over_bare'])} |"
        )
    return [*out, ""]


def loop_table(loop: dict[str, Any]) -> list[str]:
    """The Lightning loop's time per step over the bare engine step."""
    if not loop:
        return []
    secs = loop["seconds_per_step_median"]
    return [
        f"**Lightning loop as the demo runs it** ({loop['recipe']}, {loop['steps']} steps per run, "
        f"{loop['threads']} threads, {loop['rounds']} interleaved rounds; {_host(loop.get('host'))}): "
        f"loop / engine step {_r(loop['loop_over_engine'])} (target <= 1.10); "
        f"{secs['loop']:.3f} s vs {secs['engine']:.3f} s per step (medians).",
        "",
    ]


def render(results: Path) -> str:
    """All tables as markdown."""

    def load(name: str) -> dict[str, Any]:
        p = results / f"{name}.json"
        return json.loads(p.read_text()) if p.is_file() else {}

    cases = load("diagnostics").get("cases", {})
    lines = ["### Spectrum", "", *spectrum_table(cases), "### LID", "", *lid_table(cases)]
    lines += ["### Training step", "", *step_table(load("step")), *loop_table(load("loop"))]
    family = family_step_table(load("family_step"))
    if family:
        lines += ["### Method family: step cost", "", *family]
    return "\n".join(lines)


def main() -> None:
    """Replace the marked section of the README (or print the tables)."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--results", type=Path, default=RESULTS_DIR)
    ap.add_argument("--readme", type=Path, default=Path(__file__).resolve().parent / "README.md")
    ap.add_argument("--print", action="store_true", help="print instead of writing the README")
    a = ap.parse_args()
    text = render(a.results)
    if a.print:
        print(text)
        return
    readme = a.readme.read_text()
    if BEGIN not in readme or END not in readme:
        raise SystemExit(f"{a.readme} has no {BEGIN} ... {END} section to fill")
    head, rest = readme.split(BEGIN, 1)
    tail = rest.split(END, 1)[1]
    atomic_write_text(a.readme, f"{head}{BEGIN}\n{text}\n{END}{tail}")
    print(f"updated {a.readme}")


if __name__ == "__main__":
    main()
