"""Every YAML under configs/ loads: recipes through the config schema, studies through the study parser, and
the components each names (backbone, projector, objective, regularizers) build with the given keywords, so
a typo in a recipe or a study fails CI instead of a GPU job hours later."""

from __future__ import annotations

import dataclasses
import functools
import inspect
import json
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
import torch

from dimcollapse.errors import ConfigError
from dimcollapse.registry import build, get
from dimcollapse.study.grid import load_study
from dimcollapse.study.runner import resolve_configs
from dimcollapse.training.config import RunConfig, load_config
from dimcollapse.training.schedules import build_schedules, split_term_kwargs

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
PAPERS = CONFIGS / "papers"  # the named paper studies (papers/*.yaml), their recipes and settings tables
RECIPES = sorted(
    p
    for p in CONFIGS.rglob("*.yaml")
    if not {"studies", "settings"} & set(p.relative_to(CONFIGS).parts) and p.parent != PAPERS
)
STUDIES = sorted([*(CONFIGS / "studies").glob("*.yaml"), *PAPERS.glob("*.yaml")])
_BUILT: set[str] = set()  # (model, regularizer) combinations already checked (many runs share them)
_BACKBONES: dict[str, Any] = {}  # built backbones by (name, keywords)
_LAST: dict[str, Any] = {}  # the last built model, reused by the next run with the same components

# (channels, image size) of each dataset, for building the backbone without reading the data.
_INPUT = {
    "fashion_mnist": (1, 28),
    "digits": (1, 8),
    "cifar10": (3, 32),
    "cifar100": (3, 32),
    "stl10": (3, 96),
}


def _rel(p: Path) -> str:
    return str(p.relative_to(CONFIGS))


def _input_shape(cfg: RunConfig) -> tuple[int, int]:
    """(channels, image size) the run's dataset will deliver."""
    if cfg.data.name in _INPUT:
        return _INPUT[cfg.data.name]
    kw = dict(cfg.data.kwargs)
    return int(kw.get("channels", 3)), int(kw.get("image_size", 224))


def _check_dataset_kwargs(cfg: RunConfig) -> None:
    """data.kwargs must be keywords the dataset factory accepts (the data itself is not read)."""
    params = inspect.signature(get("dataset", cfg.data.name)).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    unknown = sorted(set(cfg.data.kwargs) - set(params))
    if unknown:
        raise ConfigError(f"dataset '{cfg.data.name}' has no keyword(s) {unknown}; valid: {sorted(params)}")


def _cached_build(kind: str, name: str, **kwargs: Any) -> Any:
    """registry.build, but a backbone is built once per (name, keywords): building ResNets dominates the
    test's time, and the checks only need each distinct backbone built once."""
    if kind != "backbone":
        return build(kind, name, **kwargs)
    key = json.dumps([name, kwargs], sort_keys=True, default=str)
    if key not in _BACKBONES:
        _BACKBONES[key] = build(kind, name, **kwargs)
    return _BACKBONES[key]


def _build_components(cfg: RunConfig) -> None:
    """Build backbone + projector + objective and every regularizer; weight terms run once on the model."""
    from dimcollapse.training import model as model_module

    _check_dataset_kwargs(cfg)
    terms = [get("regularizer", r.name) for r in cfg.regularizers]  # the schedules are valid too
    build_schedules(cfg, 10, 100, get("objective", cfg.objective.name), terms)
    channels, size = _input_shape(cfg)
    model_key = json.dumps([str(cfg.model), str(cfg.objective), channels, size])
    keys = [json.dumps([model_key, str(r)]) for r in cfg.regularizers]
    if model_key in _BUILT and all(k in _BUILT for k in keys):
        return
    with torch.no_grad(), mock.patch.object(model_module, "build", _cached_build):
        if _LAST.get("key") != model_key:
            model = model_module.SSLModel.from_config(cfg.model, cfg.objective, channels, size)
            _LAST.update(key=model_key, model=model)
        _BUILT.add(model_key)
        for key, reg_cfg in zip(keys, cfg.regularizers, strict=True):
            reg = build("regularizer", reg_cfg.name, **split_term_kwargs(reg_cfg.kwargs)[1])
            if reg.target == "weights":
                value = reg(_LAST["model"])
                assert torch.isfinite(value), f"{reg_cfg.name} gives a non-finite term"
            _BUILT.add(key)


@functools.cache
def _recipe(path: Path) -> RunConfig:
    return load_config(path)


@functools.cache
def _plan(path: Path) -> list[tuple[Any, RunConfig]]:
    """Resolved configs of every variant at its first grid point, and of the first variant at every grid
    point (grid points differ only in the grid keys' values, so this covers every key and value)."""
    study = load_study(path)
    first = study.runs[0].variant
    seen: set[str] = set()
    keep = []
    for spec in study.runs:
        if spec.variant == first or spec.variant not in seen:
            keep.append(spec)
        seen.add(spec.variant)
    return resolve_configs(dataclasses.replace(study, runs=keep))


def test_configs_are_found() -> None:
    """The GPU recipe folders and the studies exist (a moved folder would silently skip the checks)."""
    folders = {p.relative_to(CONFIGS).parts[0] for p in RECIPES}
    assert {"fmnist", "cifar10", "cifar100", "imagenet100"} <= folders
    assert len(STUDIES) >= 5


@pytest.mark.parametrize("path", RECIPES, ids=_rel)
def test_recipe_loads_and_builds(path: Path) -> None:
    """load_config accepts the recipe, and its components build with their keyword arguments."""
    cfg = _recipe(path)
    assert cfg.name and cfg.name != "run", f"{_rel(path)} should set its own name"
    _build_components(cfg)


@pytest.mark.parametrize("path", STUDIES, ids=_rel)
def test_study_resolves(path: Path) -> None:
    """Every variant and grid value resolves to a valid config whose components build; run ids are unique."""
    plan = _plan(path)
    assert plan, f"{_rel(path)} expands to no runs"
    ids = [spec.run_id for spec in load_study(path).runs]
    assert len(ids) == len(set(ids))
    for _, cfg in plan:
        _build_components(cfg)


def test_gpu_recipes_match_the_papers_settings() -> None:
    """The GPU recipes carry the settings the papers used (ResNet-18, LARS, batch, epochs, DDP, AMP)."""
    for folder, stem in (("cifar10", "cifar"), ("cifar100", "cifar"), ("imagenet100", "imagenet")):
        for path in sorted((CONFIGS / folder).glob("*.yaml")):
            cfg = _recipe(path)
            where = _rel(path)
            assert cfg.model.backbone in ("resnet18", "resnet50"), where
            assert cfg.model.backbone_kwargs["stem"] == stem, where
            assert cfg.trainer.accelerator == "gpu" and cfg.trainer.strategy == "ddp", where
            assert cfg.trainer.precision in ("16-mixed", "bf16-mixed") and cfg.trainer.sync_batchnorm, where
            assert 256 <= cfg.data.batch_size * int(cfg.trainer.devices) <= 512, where
            assert 100 <= cfg.optim.epochs <= 1000, where
            if cfg.objective.name != "simsiam":
                assert cfg.optim.name == "lars", where
    kw: dict[str, Any] = {}
    for name in ("simclr_mlp", "byol", "barlow_twins", "vicreg", "directclr"):
        kw[name] = dict(_recipe(CONFIGS / "cifar10" / f"{name}.yaml").objective.kwargs)
    assert kw["simclr_mlp"]["temperature"] == 0.5
    assert dict(_recipe(CONFIGS / "imagenet100" / "simclr_mlp.yaml").objective.kwargs)["temperature"] == 0.2
    assert (
        _recipe(CONFIGS / "cifar10" / "byol.yaml").ema.base_momentum == 0.99
        and "base_momentum" not in kw["byol"]
    )
    assert _recipe(CONFIGS / "imagenet100" / "byol.yaml").ema.base_momentum == 0.996
    assert kw["barlow_twins"]["lambd"] == 5e-3
    assert (kw["vicreg"]["sim_coeff"], kw["vicreg"]["std_coeff"], kw["vicreg"]["cov_coeff"]) == (25, 25, 1)
    assert kw["directclr"] == {"d0": 90, "temperature": 0.1}
    r50 = _recipe(CONFIGS / "imagenet100" / "directclr_r50.yaml")
    assert r50.model.backbone == "resnet50" and dict(r50.objective.kwargs)["d0"] == 360


def test_regularizer_study_covers_every_cell() -> None:
    """regularizers_fmnist: SimCLR and BYOL x {none, so, srip, last_layer, werank, ldreg} x 3 seeds."""
    path = CONFIGS / "studies" / "regularizers_fmnist.yaml"
    seeds = {
        v: sorted(s.grid_point["trainer.seed"] for s in load_study(path).runs if s.variant == v)
        for v in {s.variant for s in load_study(path).runs}
    }
    plan = [(spec, cfg) for spec, cfg in _plan(path) if spec.grid_point["trainer.seed"] == 0]
    cells: dict[tuple[str, str], list[int]] = {}
    for spec, cfg in plan:
        regs = "+".join(r.name for r in cfg.regularizers) or "none"
        assert spec.variant == cfg.objective.name + ("" if regs == "none" else f"_{regs}")
        cells[(cfg.objective.name, regs)] = seeds[spec.variant]
        assert cfg.optim.max_steps is not None  # equal step budgets, whatever each term costs
    expected = {
        (o, r) for o in ("simclr", "byol") for r in ("none", "so", "srip", "last_layer", "werank", "ldreg")
    }
    assert set(cells) == expected
    assert all(sorted(seeds) == [0, 1, 2] for seeds in cells.values())
    ldreg = {
        cfg.objective.name: dict(cfg.regularizers[0].kwargs)["weight"]
        for spec, cfg in plan
        if spec.variant.endswith("ldreg")
    }
    assert ldreg == {"simclr": 0.01, "byol": 0.005}  # the LDReg paper's beta per objective


def test_a_typo_fails(tmp_path: Path) -> None:
    """The checks above can fail: a misspelt key in a recipe and a bad keyword in a study are caught."""
    bad = tmp_path / "bad.yaml"
    bad.write_text(f"base: {CONFIGS / 'cifar10' / 'base.yaml'}\nname: bad\noptim: {{learning_rate: 0.1}}\n")
    with pytest.raises(ConfigError, match="learning_rate"):
        load_config(bad)
    kw = tmp_path / "kw.yaml"
    kw.write_text(
        f"base: {CONFIGS / 'cifar10' / 'base.yaml'}\nname: kw\nobjective: {{kwargs: {{tau: 0.5}}}}\n"
    )
    with pytest.raises(Exception, match="tau"):
        _build_components(load_config(kw))
