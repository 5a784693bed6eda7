"""`dimcollapse study` end to end: a rerun trains nothing, a killed study resumes, bad studies exit 2."""

from __future__ import annotations

import json
from pathlib import Path

from study_helpers import RUN_IDS, STUDY_YAML, TinyStudy, copy_study, flat, run_cli, write_study

pytest_plugins = ["conftest_study"]


def _mtimes(folder: Path, pattern: str) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in sorted(folder.glob(pattern))}


def test_first_run_trains_everything(tiny_study: TinyStudy) -> None:
    text = flat(tiny_study.console)
    assert "3 trained, 0 resumed, 0 already done, 0 failed" in text
    rows = json.loads((tiny_study.folder / "results.json").read_text())
    assert [r["run_id"] for r in rows] == list(RUN_IDS)
    assert all(r["status"] == "done" for r in rows)
    for rid in RUN_IDS:
        m = json.loads((tiny_study.folder / "runs" / rid / "metrics.json").read_text())
        assert m["resumed"] is False
        assert (tiny_study.folder / "runs" / rid / "checkpoints" / "last.ckpt").is_file()
    header = (tiny_study.folder / "results.csv").read_text().splitlines()[0].split(",")
    assert header[:3] == ["run_id", "variant", "status"] and "erank_r" in header


def test_rerun_skips_finished_runs(tiny_study: TinyStudy, tmp_path: Path) -> None:
    out = copy_study(tiny_study, tmp_path / "study")
    before = _mtimes(out, "runs/*/metrics.json") | _mtimes(out, "runs/*/checkpoints/*.ckpt")
    assert len(before) == 3 * 3  # metrics.json, last.ckpt, final.ckpt per run
    rows_before = json.loads((out / "results.json").read_text())
    status, text = run_cli(["study", str(tiny_study.study_file), "--out", str(out), "--no-report"])
    assert status == 0, text
    assert "0 trained, 0 resumed, 3 already done, 0 failed" in flat(text)
    assert not any(f"{verb} {rid}" in flat(text) for verb in ("training", "resuming") for rid in RUN_IDS)
    after = _mtimes(out, "runs/*/metrics.json") | _mtimes(out, "runs/*/checkpoints/*.ckpt")
    assert after == before  # nothing was retrained or rewritten
    assert json.loads((out / "results.json").read_text()) == rows_before


def test_killed_study_resumes_the_unfinished_run(tiny_study: TinyStudy, tmp_path: Path) -> None:
    out = copy_study(tiny_study, tmp_path / "study")
    killed = out / "runs" / "simclr_none"
    # a run killed during training: its last checkpoint exists, its final files do not
    for name in ("metrics.json", "artifacts.json", "artifacts.npz", "checkpoints/final.ckpt"):
        (killed / name).unlink(missing_ok=True)
    assert (killed / "checkpoints" / "last.ckpt").is_file()
    others = {rid: _mtimes(out / "runs" / rid, "*.json") for rid in RUN_IDS if rid != "simclr_none"}
    steps = json.loads((tiny_study.folder / "runs" / "simclr_none" / "metrics.json").read_text())["steps"]

    status, text = run_cli(["study", str(tiny_study.study_file), "--out", str(out), "--no-report"])
    assert status == 0, text
    console = flat(text)
    assert "resuming simclr_none" in console
    assert "0 trained, 1 resumed, 2 already done, 0 failed" in console
    m = json.loads((killed / "metrics.json").read_text())
    assert m["resumed"] is True and m["steps"] == steps  # continued from the checkpoint, not restarted
    assert (killed / "checkpoints" / "final.ckpt").is_file()
    assert {rid: _mtimes(out / "runs" / rid, "*.json") for rid in others} == others
    rows = json.loads((out / "results.json").read_text())
    assert [r["run_id"] for r in rows] == list(RUN_IDS) and all(r["status"] == "done" for r in rows)
    assert rows[1]["erank_r"] == m["erank_r"]


def test_unknown_top_level_key_exits_2(tmp_path: Path) -> None:
    study = write_study(tmp_path, STUDY_YAML + "seeds: [0, 1]\n")
    status, text = run_cli(["study", str(study), "--out", str(tmp_path / "out")])
    assert status == 2 and "unknown key(s) ['seeds']" in text and "Valid keys" in text
    assert "Traceback" not in text and not (tmp_path / "out").exists()


def test_unknown_config_key_exits_2_before_training(tmp_path: Path) -> None:
    study = write_study(tmp_path, STUDY_YAML + "set: {optim.no_such_key: 1}\n")
    status, text = run_cli(["study", str(study), "--out", str(tmp_path / "out")])
    assert status == 2 and "no_such_key" in flat(text) and "Traceback" not in text
    assert not (tmp_path / "out" / "runs").exists()


def test_unknown_run_key_exits_2(tmp_path: Path) -> None:
    study = write_study(tmp_path, STUDY_YAML.replace("name: simclr_so,", "name: simclr_so, sett: {},"))
    status, text = run_cli(["study", str(study), "--out", str(tmp_path / "out")])
    assert status == 2 and "sett" in text and "simclr_so" in text


def test_missing_study_file_exits_2(tmp_path: Path) -> None:
    status, text = run_cli(["study", str(tmp_path / "nope.yaml")])
    assert status == 2 and "does not exist" in flat(text) and "Traceback" not in text
