"""Run configuration: schema defaults, YAML + overrides, recipes with `base`, and clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from dimcollapse.errors import ConfigError
from dimcollapse.training.config import from_dict, load_config, merge_config, to_dict

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def test_overrides_are_typed_and_kwargs_mappings_replace() -> None:
    cfg = load_config(None, ["optim.lr=0.05", "data.batch_size=64", "model.projector_kwargs={d0: 8}"])
    assert cfg.optim.lr == 0.05 and isinstance(cfg.optim.lr, float)
    assert cfg.data.batch_size == 64
    cfg = merge_config({"model": {"projector_kwargs": {"hidden_dim": 32, "out_dim": 8}}},
                       ["model.projector_kwargs={d0: 8}"])  # fmt: skip
    assert cfg.model.projector_kwargs == {"d0": 8}  # replaced, not merged
    cfg = merge_config(
        {"model": {"projector_kwargs": {"hidden_dim": 32}}}, ["model.projector_kwargs.out_dim=4"]
    )
    assert cfg.model.projector_kwargs == {"hidden_dim": 32, "out_dim": 4}
    cfg = load_config(None, ["regularizers=[{name: so, kwargs: {weight: 0.001}}, {name: ldreg}]"])
    assert [r.name for r in cfg.regularizers] == ["so", "ldreg"]
    assert cfg.regularizers[0].kwargs == {"weight": 0.001}
    assert from_dict(to_dict(cfg)) == cfg


@pytest.mark.parametrize(
    ("override", "pattern"),
    [
        ("optim.lrr=1", r"unknown config key 'optim.lrr'.*Valid keys here:.*\blr\b.*warmup_epochs"),
        ("foo=1", r"unknown config key 'foo'.*data, ema, eval, model"),
        ("regularizers=[{nam: so}]", r"unknown config key 'nam' in a regularizer entry.*kwargs, name"),
        ("optim.lr=abc", r"bad value for config key 'optim.lr'"),
        ("optim.name=adam", r"optim.name = 'adam' is not valid. Valid values: sgd, lars, adamw"),
        ("trainer.precision=8", r"Valid values: 32-true"),
        ("data.fraction=0", r"data.fraction must be in \(0, 1\]"),
        ("data.batch_size=0", r"data.batch_size must be > 0"),
        ("data.views.n_views=1", r"n_views must be >= 2"),
        ("monitor.warn_fraction=2", r"warn_fraction must be in \[0, 1\]"),
        ("eval.knn_k=[]", r"eval.knn_k must be a non-empty list"),
        ("objective.name=simclrr", r"unknown objective 'simclrr'.*simclr"),
        ("model.projector=mlpp", r"unknown projector 'mlpp'.*mlp"),
        ("regularizers=[{name: sso}]", r"unknown regularizer 'sso'.*\bso\b"),
        ("optim.lr", r"must look like key=value"),
    ],
)
def test_bad_config_raises_config_error_listing_valid(override: str, pattern: str) -> None:
    with pytest.raises(ConfigError, match=pattern):
        load_config(None, [override])


def test_recipe_base_include_and_file_errors(tmp_path: Path) -> None:
    (tmp_path / "base.yaml").write_text(
        "optim: {lr: 0.5, epochs: 3}\nmodel: {projector_kwargs: {out_dim: 9}}\n"
    )
    (tmp_path / "child.yaml").write_text(
        "base: base.yaml\noptim: {epochs: 7}\nmodel: {projector_kwargs: {}}\n"
    )
    cfg = load_config(tmp_path / "child.yaml")
    assert (cfg.optim.lr, cfg.optim.epochs) == (0.5, 7)
    assert cfg.model.projector_kwargs == {}
    (tmp_path / "loop.yaml").write_text("base: loop.yaml\n")
    with pytest.raises(ConfigError, match="includes itself"):
        load_config(tmp_path / "loop.yaml")
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.yaml")
    (tmp_path / "bad.yaml").write_text("optim: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(tmp_path / "bad.yaml")
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(tmp_path / "list.yaml")


def test_every_shipped_recipe_validates() -> None:
    recipes = [
        p
        for d in ("fmnist", "cifar10", "cifar100", "imagenet100")
        for p in sorted((CONFIGS / d).glob("*.yaml"))
    ]
    assert len(recipes) >= 14
    objectives = set()
    for path in recipes:
        cfg = load_config(path)
        objectives.add(cfg.objective.name)
    assert {"simclr", "directclr", "byol", "barlow_twins", "vicreg"} <= objectives
