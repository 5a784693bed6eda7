"""`dimcollapse report` over folders of every kind: unreadable ones skipped (named, one line each),
monitor-only folders and a run's checkpoints compared over training, N shown for training runs."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import torch
from torch import nn

from dimcollapse import Tracker
from dimcollapse.analysis import analyze_embeddings
from study_helpers import TinyStudy, flat, run_cli

pytest_plugins = ["conftest_study"]


def _tracked(folder: Path, collapse: bool, seed: int) -> None:
    """A plain loop tracked by Tracker: only monitor.json (no metrics.json) ends up in ``folder``."""
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(12, 16), nn.ReLU(), nn.Linear(16, 8))
    tracker = Tracker(model, torch.randn(60, 12), every=1, out_path=folder / "monitor.json", lid_k=5)
    for step in (1, 2, 3):
        if collapse:  # squash the last layer's rows onto one direction: its output loses rank
            with torch.no_grad():
                model[2].weight.mul_(0.2).add_(model[2].weight[:1] * 0.8)
        tracker.step(step)
    tracker.write()


def test_monitor_only_folders_compare_over_training(tmp_path: Path) -> None:
    _tracked(tmp_path / "healthy", False, 0)
    _tracked(tmp_path / "collapsing", True, 0)
    assert not (tmp_path / "healthy" / "metrics.json").exists()
    out = tmp_path / "page"
    status, text = run_cli(
        ["report", str(tmp_path / "healthy"), str(tmp_path / "collapsing"), "--out", str(out)]
    )
    assert status == 0, text
    page = (out / "index.html").read_text()
    assert "healthy" in page and "collapsing" in page and "monitor, step 3" in page
    assert "Per-layer weights" in page
    for layer in ("0", "2"):  # the per-layer table of each monitor's last record names both Linear layers
        assert re.search(rf"<td[^>]*>{layer}</td>", page), layer
    assert (out / "figures" / "history.png").is_file()
    # one monitor folder alone is a comparison page too (not the run report, which needs metrics.json)
    status, text = run_cli(["report", str(tmp_path / "healthy"), "--out", str(tmp_path / "one")])
    assert status == 0 and (tmp_path / "one" / "index.html").is_file(), text


def test_curve_metrics_follow_the_catalogue_then_the_rest() -> None:
    from dimcollapse.report.compare import curve_metrics

    hist = {
        "a": [{"step": 1, "std_r": 0.1, "lidar_r": 3.0, "erank_r": 5.0, "rankme_r": 6.0, "warning": False}]
    }
    keys = [k for k, _ in curve_metrics(hist)]
    assert keys == ["erank_r", "rankme_r", "lidar_r", "std_r"]


def _good_analyze(folder: Path) -> None:
    analyze_embeddings(np.random.default_rng(0).normal(size=(60, 6)), out=folder, k=5, figures=False)


def test_unreadable_folders_among_several_are_skipped_with_one_line_each(tmp_path: Path) -> None:
    _good_analyze(tmp_path / "good")
    bad = {
        "newer": {"record": "run", "schema_version": 99, "erank_r": 3.0},
        "garbage_npz": {"erank_r": 3.0, "n_r": 10, "d_r": 4},  # no spectrum: read from artifacts.npz
        "not_json": None,
    }
    for name, content in bad.items():
        (tmp_path / name).mkdir()
        text = "{'broken" if content is None else json.dumps(content)
        (tmp_path / name / "metrics.json").write_text(text)
    (tmp_path / "garbage_npz" / "artifacts.npz").write_bytes(b"PK\x03\x04 not a zip at all")
    (tmp_path / "stepless").mkdir()  # a monitor history whose records carry no step: nothing to plot
    (tmp_path / "stepless" / "monitor.json").write_text(
        json.dumps({"watch": "erank_r", "history": [{"x": 1}]})
    )
    (tmp_path / "inf_n").mkdir()  # a count that is no number is shown as unknown, not int(inf)
    (tmp_path / "inf_n" / "metrics.json").write_text('{"erank": 2.0, "n": Infinity, "d": 4}')
    names = ["good", *bad, "stepless", "inf_n"]
    out = tmp_path / "page"
    status, text = run_cli(["report", *(str(tmp_path / n) for n in names), "--out", str(out)])
    assert status == 0, text
    warnings = [line for line in text.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 4, text
    for name, why in (("newer", "schema version 99"), ("garbage_npz", ""), ("not_json", "not valid JSON"),
                      ("stepless", "no measurement with a step")):  # fmt: skip
        line = next((w for w in warnings if f"{tmp_path / name}" in w), "")
        assert line and why in line, (name, text)
    page = (out / "index.html").read_text()
    assert "Skipped (unreadable)" in page and ">good<" in page and ">inf_n<" in page
    assert "Traceback" not in text and "internal error" not in text
    # nothing readable at all: one error line naming every reason, exit 2
    status, text = run_cli(["report", str(tmp_path / "newer"), str(tmp_path / "not_json"), "--out", str(out)])
    assert status == 2 and "nothing to compare" in flat(text) and "schema version 99" in flat(text)


def test_training_runs_show_n_and_every_accuracy_on_the_comparison_page(
    tiny_study: TinyStudy, tmp_path: Path
) -> None:
    runs = tiny_study.folder / "runs"
    out = tmp_path / "page"
    status, text = run_cli(["report", str(runs / "simclr_mlp"), str(runs / "simclr_none"), "--out", str(out)])
    assert status == 0, text
    metrics = json.loads((runs / "simclr_mlp" / "metrics.json").read_text())
    assert metrics["record"] == "run" and metrics["schema_version"] == 2
    page = (out / "index.html").read_text()
    n = int(metrics["n_r"])
    assert re.search(rf"simclr_mlp</td>.*?<td[^>]*>{n}</td>", page, re.S), "N of a training run is shown"
    for k in (20, 200):
        assert f"kNN k={k} (%)" in page
    assert f"{100 * metrics['knn_k20_top1']:.1f}" in page
    from dimcollapse.study.results import load_results

    rows = load_results(tiny_study.folder)  # the record's kind and version are no result columns
    assert rows and all("schema_version" not in r and "record" not in r for r in rows)


def test_study_report_skips_a_runs_garbage_artifacts(tiny_study: TinyStudy, tmp_path: Path) -> None:
    study = tmp_path / "study"
    shutil.copytree(tiny_study.folder, study, ignore=shutil.ignore_patterns("report"))
    run = study / "runs" / "simclr_none"
    (run / "artifacts.npz").write_bytes(b"\x00garbage\xff" * 64)
    shutil.rmtree(run / "checkpoints")  # nothing to recompute them from
    repaired = study / "runs" / "simclr_mlp"
    (repaired / "artifacts.npz").write_bytes(b"\x00garbage\xff" * 64)  # its checkpoint recomputes them
    status, text = run_cli(["report", str(study), "--map", "pca"])
    assert status == 0, text
    warnings = [line for line in text.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and str(run) in warnings[0], text
    with np.load(repaired / "artifacts.npz") as z:
        assert "spectrum_r" in z.files
    page = (study / "report" / "index.html").read_text()
    assert "simclr_none" in page and "simclr_mlp" in page


def test_a_runs_checkpoints_compare_over_training(tmp_path: Path) -> None:
    from lightning.pytorch.callbacks import ModelCheckpoint

    from dimcollapse.training.config import load_config
    from dimcollapse.training.run import train
    from study_helpers import BASE_YAML

    (tmp_path / "base.yaml").write_text(BASE_YAML)
    cfg = load_config(tmp_path / "base.yaml", ["eval.linear_probe=false"])
    run = tmp_path / "run"
    every = ModelCheckpoint(dirpath=run / "series", every_n_train_steps=3, save_top_k=-1, save_last=False)
    train(cfg, run, extra_callbacks=[every])
    ckpts = sorted((run / "series").glob("*.ckpt"))
    assert len(ckpts) == 2, ckpts
    out = tmp_path / "page"
    status, text = run_cli(["report", *map(str, ckpts), "--out", str(out)])
    assert status == 0, text
    page = (out / "index.html").read_text()
    assert "checkpoint, step 3" in page and "checkpoint, step 6" in page
    assert (out / "figures" / "history.png").is_file()


def test_the_80_column_comparison_table_never_cuts_a_number() -> None:
    import io

    from rich.console import Console

    from dimcollapse.cli.analyze import compare_columns, compare_table, fmt

    values = {"n": 5000, "d": 2048, "lid_k": 20, "erank": 1234.56789, "rankme": 1500.25, "alpha": 1.23456,
              "collapsed_dims": 1999, "dims_90": 1024, "dims_99": 2000, "lid_mle_gmean": 123.456}  # fmt: skip
    rows = [{"name": f"a_rather_long_embedding_name_{i}", **values} for i in range(2)]
    console = Console(file=io.StringIO(), width=80, color_system=None)
    console.print(compare_table(rows))
    shown = console.file.getvalue()  # type: ignore[attr-defined]
    assert "…" not in shown
    for key, _ in compare_columns():
        cell = fmt(rows[0], key)
        assert cell in shown.replace("\n", " ") or cell in shown, (key, cell, shown)
