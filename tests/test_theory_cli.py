"""`dimcollapse simulate`: outputs on disk, the summary page, and errors for bad values."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dimcollapse.cli.main import run


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["simulate", "shapes"], "augmentation"),
        (["simulate", "depth", "--loss", "cosine"], "distance, dot"),
        (["simulate", "augmentation", "--steps", "-3"], "steps"),
        (["simulate", "alignment", "--lr", "0"], "lr"),
        (["simulate", "augmentation", "--noise-stds", "a,b"], "comma-separated"),
        (["simulate", "depth", "--noise-stds", "0.1,0.2"], "one value"),
    ],
)
def test_bad_values_exit_2_with_valid_values(
    argv: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run([*argv, "--out", str(tmp_path)]) == 2
    assert message in capsys.readouterr().err


def test_augmentation_writes_results_and_figures(tmp_path: Path) -> None:
    code = run(
        ["simulate", "augmentation", "--steps", "30", "--noise-stds", "0.1,1.0", "--out", str(tmp_path)]
    )
    assert code == 0
    res = json.loads((tmp_path / "results.json").read_text())
    assert res["noise_stds"] == [0.1, 1.0]
    assert len(res["ratio"]) == 2
    assert res["steps_recorded"][-1] == 30
    for name in res["figures"]:
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(tmp_path.glob(".*.tmp"))  # atomic writes leave no temp files


def test_all_writes_one_page_with_embedded_figures_and_verdicts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dimcollapse.theory import summary as summary_mod

    # one run per experiment (the dot-loss comparisons only add figures; time budget)
    plan = (("augmentation", None), ("alignment", None), ("depth", None))
    monkeypatch.setattr(summary_mod, "PLAN", plan)
    assert run(["simulate", "all", "--steps", "20", "--out", str(tmp_path)]) == 0
    summary = json.loads((tmp_path / "results.json").read_text())
    page = (tmp_path / "index.html").read_text()
    n_figs = sum(len(r["figures"]) for r in summary["runs"])
    assert {r["experiment"] for r in summary["runs"]} == {"augmentation", "alignment", "depth"}
    assert page.count("data:image/png;base64,") == n_figs
    verdict_cells = page.count('class="l verdict-holds"') + page.count('class="l verdict-does-not-hold"')
    assert verdict_cells == len(summary["claims"])
    for c in summary["claims"]:
        assert isinstance(c["holds"], bool)
