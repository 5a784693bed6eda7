"""Study files: expansion of variants x grid, ids, validation."""

from __future__ import annotations

from pathlib import Path

import pytest

from dimcollapse.errors import ConfigError, InputError
from dimcollapse.study.grid import expand, load_study


def test_expand_is_cartesian_and_later_overrides_win() -> None:
    specs = expand(
        [{"name": "a", "set": {"optim": {"lr": 0.1}}}, {"name": "b"}],
        {"trainer.seed": [0, 1, 2], "data.batch_size": [64, 128]},
        {"optim.lr": 0.5, "optim.epochs": 1},
    )
    assert len(specs) == 2 * 3 * 2
    assert len({s.run_id for s in specs}) == len(specs)
    a0 = next(s for s in specs if s.variant == "a")
    assert a0.overrides["optim.lr"] == 0.1  # variant beats common
    b0 = next(s for s in specs if s.variant == "b")
    assert b0.overrides["optim.lr"] == 0.5
    assert "optim.lr=0.1" in a0.dotlist()


def test_regularizer_lists_stay_whole() -> None:
    (spec,) = expand(
        [{"name": "so", "set": {"regularizers": [{"name": "so", "kwargs": {"weight": 1e-3}}]}}], {}
    )
    assert spec.overrides["regularizers"] == [{"name": "so", "kwargs": {"weight": 1e-3}}]


def test_duplicate_ids_rejected() -> None:
    with pytest.raises(ConfigError, match="share the id"):
        expand([{"name": "a"}, {"name": "a"}], {})


def test_bad_grid_value() -> None:
    with pytest.raises(ConfigError, match="non-empty list"):
        expand([{"name": "a"}], {"trainer.seed": 3})  # type: ignore[dict-item]


def test_load_study_validates(tmp_path: Path) -> None:
    base = tmp_path / "base.yaml"
    base.write_text("optim: {epochs: 1}\n")
    f = tmp_path / "s.yaml"
    f.write_text("name: s\nbase: base.yaml\nruns: [{name: x}]\ngrid: {trainer.seed: [0, 1]}\n")
    study = load_study(f)
    assert study.base == base.resolve() and [r.run_id for r in study.runs] == ["x__seed-0", "x__seed-1"]
    f.write_text("name: s\nbase: base.yaml\nbogus: 1\n")
    with pytest.raises(ConfigError, match="bogus"):
        load_study(f)
    f.write_text("name: s\nbase: nothere.yaml\n")
    with pytest.raises(InputError, match="does not exist"):
        load_study(f)
    f.write_text("name: [unclosed\n")
    with pytest.raises(InputError, match="not valid YAML"):
        load_study(f)
    with pytest.raises(InputError, match="does not exist"):
        load_study(tmp_path / "missing.yaml")
