"""Issue 5's regularizer measurement on Fashion-MNIST: run configs/studies/regularizers_fmnist.yaml in two
single-threaded processes (the study's variants split in two halves), gather the runs into one study folder
(baselines + HTML report with the claims' verdicts), then write the mean +- std table.

    python benchmarks/regularizers_fmnist.py run --out /tmp/regstudy        # ~50 min on 2 idle cores
    python benchmarks/regularizers_fmnist.py summarize /tmp/regstudy/all    # table + JSON only

The JSON goes to benchmarks/results/regularizers_fmnist.json; the markdown table is printed.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path
from statistics import mean, stdev
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
STUDY = ROOT / "configs" / "studies" / "regularizers_fmnist.yaml"
RESULT = ROOT / "benchmarks" / "results" / "regularizers_fmnist.json"
METRICS = (
    "knn_k200_top1",
    "knn_k20_top1",
    "linear_top1",
    "erank_r",
    "rankme_r",
    "lid_mle_gmean_r",
    "weight_erank_mean",
    "tail_eig_r",
    "steps",
)
REG_ORDER = ("", "so", "srip", "last_layer", "werank", "ldreg")
ARTIFACTS = (
    "import sys, pathlib\n"
    "from dimcollapse.study.artifacts import compute_artifacts\n"
    "for d in sorted(pathlib.Path(sys.argv[1]).glob('*/metrics.json')):\n"
    "    if not (d.parent / 'artifacts.json').is_file():\n"
    "        compute_artifacts(d.parent)\n"
)


def split_study(study: Path, out: Path, parts: int) -> list[list[Path]]:
    """Study files for ``parts`` processes: part i takes its share of each objective's regularizers, one file
    per seed (so all cells get seed 0 before any gets seed 1). Paths are made absolute, so run ids and
    configs are those of the full study."""
    raw = yaml.safe_load(study.read_text())
    folder = study.parent
    raw["base"] = str((folder / raw["base"]).resolve())
    runs = raw["runs"]
    for entry in runs:
        if entry.get("recipe"):
            entry["recipe"] = str((folder / entry["recipe"]).resolve())
    seeds = raw.get("grid", {}).get("trainer.seed", [0])
    files: list[list[Path]] = []
    for i in range(parts):
        mine = [r for j, r in enumerate(runs) if (j % 6) * parts // 6 == i]
        files.append([])
        for seed in seeds:
            path = out / f"part{i}_seed{seed}.yaml"
            part = dict(raw, runs=mine, grid={"trainer.seed": [seed]})
            path.write_text(yaml.safe_dump(part, sort_keys=False))
            files[i].append(path)
    return files


def run(out: Path, parts: int) -> None:
    """Train the parts in parallel (OMP_NUM_THREADS=1 each), then gather them into ``out/all``."""
    out.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    t0 = time.time()
    procs = []
    for i, studies in enumerate(split_study(STUDY, out, parts)):
        log = (out / f"part{i}.log").open("w")
        steps = [
            f"{sys.executable} -m dimcollapse study {s} --out {out / f'part{i}'} --no-baselines --no-report"
            for s in studies
        ]
        # Per-run report artifacts (spectra, weight spectra) computed here, in parallel, so the gathering
        # step's report only reads them.
        steps.append(f"{sys.executable} -c {shlex.quote(ARTIFACTS)} {out / f'part{i}' / 'runs'}")
        procs.append(subprocess.Popen(["bash", "-c", "; ".join(steps)], env=env, stdout=log, stderr=log))
    codes = [p.wait() for p in procs]
    print(f"parts finished with exit codes {codes} after {(time.time() - t0) / 60:.1f} min", flush=True)
    runs = out / "all" / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    for i in range(parts):
        for d in sorted((out / f"part{i}" / "runs").glob("*")):
            link = runs / d.name
            if not link.exists():
                link.symlink_to(d.resolve())
    env["OMP_NUM_THREADS"] = "2"
    gather = [sys.executable, "-m", "dimcollapse", "study", str(STUDY), "--out", str(out / "all")]
    subprocess.run(gather, env=env, check=False)
    print(f"study gathered after {(time.time() - t0) / 60:.1f} min", flush=True)
    summarize(out / "all", time.time() - t0)


def _stats(values: list[float]) -> dict[str, float]:
    return {"mean": mean(values), "std": stdev(values) if len(values) > 1 else 0.0, "n": len(values)}


def summarize(study_dir: Path, wall_s: float | None = None) -> dict[str, Any]:
    """Mean +- std per objective x regularizer, the report's claims, run times; JSON + markdown table."""
    rows = [r for r in json.loads((study_dir / "results.json").read_text()) if r.get("status") == "done"]
    for r in rows:  # the report's per-run artifacts (weight spectra, tail of r's spectrum)
        art = study_dir / "runs" / str(r["run_id"]) / "artifacts.json"
        if art.is_file():
            r.update({k: v for k, v in json.loads(art.read_text()).items() if k not in r})
    cells: dict[str, dict[str, Any]] = {}
    for obj in ("simclr", "byol"):
        for reg in REG_ORDER:
            sel = [r for r in rows if r.get("objective") == obj and (r.get("regularizers") or "") == reg]
            if not sel:
                continue
            cell: dict[str, Any] = {"objective": obj, "regularizer": reg or "none", "seeds": len(sel)}
            for m in METRICS:
                vals = [float(r[m]) for r in sel if isinstance(r.get(m), (int, float))]
                if vals:
                    cell[m] = _stats(vals)
            cell["fit_time_s"] = _stats([float(r.get("fit_time_s", 0.0)) for r in sel])
            cells[f"{obj}/{reg or 'none'}"] = cell
    report = study_dir / "report" / "report.json"
    if not report.is_file():
        report = study_dir / "report.json"
    claims = json.loads(report.read_text()).get("claims", []) if report.is_file() else []
    baselines_path = study_dir / "baselines.json"
    baselines = json.loads(baselines_path.read_text()).get("rows", []) if baselines_path.is_file() else []
    data = {
        "study": str(STUDY.relative_to(ROOT)),
        "study_dir": str(study_dir),
        "runs_done": len(rows),
        "wall_time_min": None if wall_s is None else round(wall_s / 60, 2),
        "cells": cells,
        "baselines": baselines,
        "claims": claims,
    }
    RESULT.parent.mkdir(parents=True, exist_ok=True)
    RESULT.write_text(json.dumps(data, indent=2, default=str) + "\n")
    print(markdown(data))
    return data


def _pm(cell: dict[str, Any], key: str, scale: float = 1.0, digits: int = 1) -> str:
    s = cell.get(key)
    return "—" if not s else f"{s['mean'] * scale:.{digits}f} ± {s['std'] * scale:.{digits}f}"


def _side(c: dict[str, Any], side: str) -> str:
    m, sd = c.get(f"{side}_mean"), c.get(f"{side}_std")
    nums = "" if m is None else f": {m:.4g} ± {sd or 0:.2g}"
    return f"{c.get(side)}{nums}"


def markdown(data: dict[str, Any]) -> str:
    """The table (accuracies in %) and the claims as markdown."""
    lines = [
        "| objective | regularizer | kNN k=200 top-1 (%) | kNN k=20 top-1 (%) | linear top-1 (%) "
        "| erank of r | RankMe of r | LID of r (MLE) | weight erank (mean) | tail eig of r | steps |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for cell in data["cells"].values():
        lines.append(
            f"| {cell['objective']} | {cell['regularizer']} | {_pm(cell, 'knn_k200_top1', 100)} "
            f"| {_pm(cell, 'knn_k20_top1', 100)} | {_pm(cell, 'linear_top1', 100)} "
            f"| {_pm(cell, 'erank_r', 1, 2)} | {_pm(cell, 'rankme_r', 1, 1)} "
            f"| {_pm(cell, 'lid_mle_gmean_r', 1, 2)} | {_pm(cell, 'weight_erank_mean', 1, 3)} "
            f"| {_pm(cell, 'tail_eig_r', 1, 2)} | {_pm(cell, 'steps', 1, 0)} |"
        )
    for b in data["baselines"]:
        knn = b.get("knn_k200_top1")
        lines.append(
            f"| {b.get('run_id')} | — | {100 * knn:.1f} | {100 * b.get('knn_k20_top1', 0):.1f} | — "
            f"| {b.get('erank_r', 0):.2f} | — | — | — | — | — |"
            if knn is not None
            else f"| {b.get('run_id')} | (no kNN) |"
        )
    lines += ["", "| claim | metric | a | b | verdict | detail |", "| --- | --- | --- | --- | --- | --- |"]
    for c in data["claims"]:
        a, b = _side(c, "a"), _side(c, "b")
        lines.append(
            f"| {c.get('claim')} | {c.get('metric')} | {a} | {b} "
            f"| **{c.get('verdict')}** | {c.get('detail')} |"
        )
    return "\n".join(lines)


def main() -> None:
    """CLI: ``run --out DIR [--parts 2]`` or ``summarize STUDY_DIR``."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--out", type=Path, required=True)
    r.add_argument("--parts", type=int, default=2)
    s = sub.add_parser("summarize")
    s.add_argument("study_dir", type=Path)
    args = ap.parse_args()
    if args.cmd == "run":
        run(args.out, args.parts)
    else:
        summarize(args.study_dir)


if __name__ == "__main__":
    main()
