"""Every method of the OR paper's family (He et al. 2024: 13 SSL methods) trains in the engine combined with
SO and with SRIP: two optimizer steps through the LightningModule on tiny synthetic images; the backbone
moves, the loss and every term stay finite, queues and centres change, the momentum target follows."""

from __future__ import annotations

from typing import Any

import lightning as L
import pytest
import torch

from dimcollapse.training.config import load_config, to_dict
from dimcollapse.training.datamodule import DataSettings, SSLDataModule
from dimcollapse.training.module import SSLModule
from dimcollapse.training.parts import module_from_record
from lightning_helpers import quiet_trainer

TINY = [
    "data.name=synthetic",
    "data.kwargs={n: 64, image_size: 8, channels: 1, num_classes: 4}",
    "data.batch_size=16",
    "model.backbone_kwargs={widths: [4, 8], blocks: [1, 1]}",
    "model.projector_kwargs={hidden_dim: 16, out_dim: 8}",
    "optim.warmup_epochs=0",
    "monitor.enabled=false",
    "eval.online_probe=false",
    "trainer.progress_bar=false",
    "trainer.tensorboard=false",
]
MULTICROP = "data.views.overrides={local_crops: 2, local_size: 4}"
# the OR paper's 13 methods (+ DirectCLR and DCL), each with the keywords of a tiny run
FAMILY: dict[str, list[str]] = {
    "simclr": [],
    "byol": ["objective.kwargs={hidden_dim: 16}", "data.views.recipe=byol"],
    "simsiam": ["objective.kwargs={hidden_dim: 16}"],
    "barlow_twins": [],
    "vicreg": [],
    "mocov2plus": ["objective.kwargs={queue_size: 32}"],
    "mocov3": ["objective.kwargs={hidden_dim: 16}"],
    "nnclr": ["objective.kwargs={hidden_dim: 16, queue_size: 32}"],
    "nnbyol": ["objective.kwargs={hidden_dim: 16, queue_size: 32}"],
    "dino": ["objective.kwargs={n_prototypes: 20, warmup_teacher_temp_epochs: 2}", MULTICROP],
    "swav": ["objective.kwargs={n_prototypes: 10, queue_size: 32}", MULTICROP],
    "ressl": ["objective.kwargs={queue_size: 32}", "data.views.overrides={views: [{}, {jitter_p: 0.0}]}"],
    "vibcreg": ["model.projector=vibcreg", "model.projector_kwargs={hidden_dim: 16, out_dim: 8, groups: 2}"],
    "wmse": ["objective.kwargs={w_size: 16}"],
    "dcl": [],
    "directclr": ["objective.kwargs={d0: 4}"],
    "msn": ["objective.kwargs={n_prototypes: 16}"],  # its own step shape: masked (training/steps/)
}
REGULARIZERS = {
    "so": "regularizers=[{name: so, kwargs: {weight: 1.0e-3}}]",
    "srip": "regularizers=[{name: srip, kwargs: {weight: 1.0e-3}}]",
}


def test_the_family_has_the_or_papers_thirteen_methods() -> None:
    from dimcollapse.registry import names

    or_paper = {"simclr", "byol", "simsiam", "barlow_twins", "vicreg", "mocov2plus", "mocov3", "nnclr",
                "nnbyol", "dino", "swav", "ressl", "vibcreg", "wmse"}  # fmt: skip
    assert or_paper <= set(names("objective")) and or_paper <= set(FAMILY)
    assert set(FAMILY) == set(names("objective"))  # every registered objective is trained with SO and SRIP


class _Outputs(L.Callback):
    """Keeps the last step's outputs (what callbacks read: r, y and the regularizer terms)."""

    def __init__(self) -> None:
        self.last: dict[str, Any] = {}

    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, idx: int) -> None:
        self.last = outputs


def _fit(method: str, reg: str, steps: int = 2) -> tuple[SSLModule, dict[str, torch.Tensor], dict[str, Any]]:
    cfg = load_config(None, [*TINY, f"objective.name={method}", *FAMILY[method], REGULARIZERS[reg],
                             f"optim.max_steps={steps}"])  # fmt: skip
    dm = SSLDataModule(DataSettings.from_config(cfg))
    dm.setup()
    module = module_from_record(to_dict(cfg), dm.info.__dict__)
    before = {k: v.clone() for k, v in module.model.state_dict().items()}
    outputs = _Outputs()
    trainer = quiet_trainer(steps, [outputs])
    trainer.fit(module, datamodule=dm)
    return module, before, outputs.last


@pytest.mark.parametrize("reg", sorted(REGULARIZERS))
@pytest.mark.parametrize("method", sorted(FAMILY))
def test_method_trains_with_an_orthogonality_regularizer(method: str, reg: str) -> None:
    module, before, outputs = _fit(method, reg)
    after = module.model.state_dict()
    assert not torch.equal(before["backbone.conv1.weight"], after["backbone.conv1.weight"])
    terms = outputs["terms"][reg]
    assert terms["value"] > 0 and all(bool(torch.isfinite(v).all()) for v in terms.values())
    assert torch.equal(outputs["r"], outputs["r"].detach()) and outputs["y"].shape[0] == outputs["r"].shape[0]
    assert all(torch.isfinite(v).all() for v in after.values() if v.is_floating_point())
    stateful: Any = [k for k in after if k.endswith((".rows", ".center"))]
    for key in stateful:  # queues and DINO's centre are updated by training steps
        assert not torch.equal(before[key], after[key]), key
    if module.model.uses_momentum_target:  # the target moved towards the online network, not onto it
        t_before, t_after = before["momentum_target.backbone.conv1.weight"], after[
            "momentum_target.backbone.conv1.weight"]  # fmt: skip
        assert not torch.equal(t_before, t_after)
        assert not torch.equal(t_after, after["backbone.conv1.weight"])
    if method == "dino":  # the teacher's prototypes follow by the same EMA
        assert not torch.equal(before["objective.teacher_prototypes.module.weight"],
                               after["objective.teacher_prototypes.module.weight"])  # fmt: skip


def test_multicrop_with_a_pairwise_momentum_objective_is_a_config_error() -> None:
    """BYOL-like objectives compare view pairs with target embeddings, which exist for global views only."""
    from dimcollapse.errors import ConfigError

    cfg = load_config(None, [*TINY, "objective.name=byol", "objective.kwargs={hidden_dim: 16}", MULTICROP])
    dm = SSLDataModule(DataSettings.from_config(cfg))
    dm.setup()
    with pytest.raises(ConfigError, match="local_crops"):
        module_from_record(to_dict(cfg), dm.info.__dict__)
