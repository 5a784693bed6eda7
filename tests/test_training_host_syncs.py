"""A training step makes no host sync outside logging steps (losses, statistics and the non-finite check
stay on the device), and the deferred non-finite check still names the step and the term and never lets a
state reached through a non-finite loss into a checkpoint."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from dimcollapse import registry
from dimcollapse.errors import DivergedError
from dimcollapse.registry import register
from dimcollapse.regularizers.base import Regularizer
from dimcollapse.training.config import load_config
from dimcollapse.training.run import train
from host_syncs import HostSyncCounter

TINY = [
    "data.name=synthetic",
    "data.kwargs={n: 128, image_size: 8, channels: 1, num_classes: 4}",
    "data.batch_size=16",
    "model.backbone_kwargs={widths: [4, 8], blocks: [1, 1]}",
    "model.projector_kwargs={hidden_dim: 16, out_dim: 8}",
    "optim.max_steps=6",
    "optim.warmup_epochs=0.5",
    "monitor.enabled=false",
    "trainer.progress_bar=false",
    "trainer.tensorboard=false",
    "trainer.checkpoint_every=100",
    "trainer.log_every=4",
    "eval.linear_probe_epochs=2",
    "eval.knn_k=[5]",
]
# augmentation parameters are drawn on the host by design (a CPU generator, then moved to the images'
# device): reading those host tensors is not a device sync
HOST_SIDE = ("dimcollapse/data/views_ops.py",)
CASES = {
    "byol_so_whitening": [
        "objective.name=byol",
        "objective.kwargs={hidden_dim: 16}",
        "data.views.recipe=byol",
        "regularizers=[{name: so, kwargs: {weight: 1.0e-3, warmup_epochs: 1}},"
        " {name: whitening, kwargs: {weight: 0.1}}]",
    ],
    "simclr_srip_koleo_probe": [
        "objective.name=simclr",
        "regularizers=[{name: srip, kwargs: {weight: 1.0e-3}}, {name: koleo, kwargs: {weight: 0.05}}]",
    ],
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_no_host_sync_outside_logging_steps(tmp_path: Path, case: str) -> None:
    counter = HostSyncCounter()
    train(load_config(None, [*TINY, *CASES[case]]), tmp_path, extra_callbacks=[counter])
    quiet = [1, 2, 4]  # logging steps: 3 (every 4th) and 5 (the last); step 0 sets things up
    assert set(quiet) <= set(counter.per_step)
    for step in quiet:
        syncs = [c for c in counter.per_step[step] if not any(h in c for h in HOST_SIDE)]
        assert syncs == [], (step, syncs)
    assert counter.per_step[3], "the logging step reads values (the check would count a real sync)"


class _Explodes(Regularizer):
    """A feature term that is finite, then Inf from step ``at`` on (counted in calls)."""

    target = "features"
    default_weight = 1.0

    def __init__(self, at: int = 2) -> None:
        super().__init__()
        self.at, self.calls = int(at), 0

    def forward(self, features: list[torch.Tensor], reference: Any = None) -> torch.Tensor:
        self.calls += 1
        raw = 1e-3 * features[0].pow(2).mean()
        return self.record(raw * float("inf") if self.calls > self.at else raw)


def test_a_nonfinite_loss_between_logging_steps_names_its_step_and_is_never_checkpointed(
    tmp_path: Path,
) -> None:
    overrides = [*TINY, "objective.name=simclr", "trainer.checkpoint_every=1", "trainer.log_every=5",
                 "regularizers=[{name: test_explodes, kwargs: {at: 2}}]"]  # fmt: skip
    register("regularizer", "test_explodes")(_Explodes)  # only for this test: names() stays the package's
    try:
        cfg = load_config(None, overrides)
        with pytest.raises(DivergedError) as err:
            train(cfg, tmp_path)
    finally:
        registry._REGISTRY["regularizer"].pop("test_explodes", None)
    msg = str(err.value)
    # step 2 is the first non-finite one; no host read happened there, but the message names it
    assert "non-finite at step 2" in msg and "regularizer test_explodes" in msg
    ckpt = torch.load(tmp_path / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert ckpt["global_step"] <= 2  # no state reached through the non-finite loss was saved
    assert all(bool(torch.isfinite(v).all()) for v in ckpt["state_dict"].values() if v.is_floating_point())
