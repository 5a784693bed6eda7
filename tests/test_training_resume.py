"""Resume after a kill mid-epoch reproduces the uninterrupted run; NaN stops with the last good checkpoint;
checkpoints are atomic and a checkpoint from another model is refused naming the keys."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import lightning as L
import pytest
import torch

from dimcollapse.errors import ConfigError, InputError
from dimcollapse.training.checkpoint import AtomicCheckpointIO, check_compatible, load_checkpoint
from dimcollapse.training.config import load_config, to_dict
from dimcollapse.training.run import train

TINY = [
    "data.name=synthetic",
    "data.kwargs={n: 160, image_size: 8, channels: 1, num_classes: 4}",
    "data.batch_size=16",  # 144 pool images -> 9 steps per epoch
    "model.backbone_kwargs={widths: [4, 8], blocks: [1, 1]}",
    "model.projector_kwargs={hidden_dim: 16, out_dim: 8}",
    "monitor.every_n_steps=2",
    "monitor.probe_size=16",
    "monitor.lid_k=4",
    "trainer.progress_bar=false",
    "trainer.tensorboard=false",
    "eval.linear_probe_epochs=10",
    "eval.knn_k=[5]",
]


class Kill(L.Callback):
    """Simulates a crash: raises after optimizer step ``at``."""

    def __init__(self, at: int) -> None:
        self.at = at

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        if trainer.global_step == self.at:
            raise RuntimeError("simulated kill")


class PoisonWeights(L.Callback):
    """Sets one backbone weight to NaN after optimizer step ``at`` (the next loss is NaN)."""

    def __init__(self, at: int) -> None:
        self.at = at

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: Any, *args: Any) -> None:
        if trainer.global_step == self.at:
            with torch.no_grad():
                pl_module.model.backbone.conv1.weight[0, 0, 0, 0] = float("nan")


MULTICROP = ["data.views.overrides={local_crops: 2, local_size: 4}"]
RESUME_CASES = {
    "simclr": ["objective.name=simclr"],
    "byol": ["objective.name=byol", "objective.kwargs={hidden_dim: 16}", "data.views.recipe=byol"],
    # SRIP keeps power-iteration vectors between steps: they must come back with the checkpoint
    "simclr_srip": ["objective.name=simclr", "regularizers=[{name: srip, kwargs: {weight: 0.5}}]"],
    # queues of momentum keys (FeatureQueue, also SwAV's / NNCLR's / ReSSL's), DINO's centre and teacher
    # prototypes: buffers in the checkpoint
    "mocov2plus": ["objective.name=mocov2plus", "objective.kwargs={queue_size: 40}"],
    "dino_multicrop": ["objective.name=dino", "objective.kwargs={n_prototypes: 16}", *MULTICROP],
}


@pytest.mark.parametrize("case", sorted(RESUME_CASES))
def test_resume_after_kill_mid_epoch_matches_uninterrupted(tmp_path: Path, case: str) -> None:
    cfg = load_config(None, [*TINY, *RESUME_CASES[case], "optim.max_steps=14",
                             "trainer.checkpoint_every=4"])  # fmt: skip
    full = train(cfg, tmp_path / "full")
    with pytest.raises(RuntimeError, match="simulated kill"):
        train(cfg, tmp_path / "killed", extra_callbacks=[Kill(at=11)])  # epoch 2, step 2 of 9
    assert load_checkpoint(tmp_path / "killed" / "checkpoints" / "last.ckpt")["global_step"] == 8
    resumed = train(cfg, tmp_path / "killed")  # an interrupted run in --out resumes by itself
    assert resumed["resumed"] and resumed["steps"] == full["steps"] == 14
    with pytest.raises(InputError, match="already holds a run"):  # a finished one is refused
        train(cfg, tmp_path / "killed")
    for key in ("knn_k5_top1", "linear_top1", "erank_r", "rankme_z", "lid_mle_gmean_r"):
        assert resumed[key] == pytest.approx(full[key], rel=1e-6, abs=1e-9), key
    a = load_checkpoint(tmp_path / "full" / "checkpoints" / "final.ckpt")["state_dict"]
    b = load_checkpoint(tmp_path / "killed" / "checkpoints" / "final.ckpt")["state_dict"]
    for k, v in a.items():
        if isinstance(v, torch.Tensor):
            torch.testing.assert_close(b[k], v, rtol=1e-5, atol=1e-6, msg=k)
    hist_full = json.loads((tmp_path / "full" / "monitor.json").read_text())["history"]
    hist_res = json.loads((tmp_path / "killed" / "monitor.json").read_text())["history"]
    assert [h["step"] for h in hist_res] == [h["step"] for h in hist_full] == [1, *range(2, 15, 2)]


def test_resume_without_checkpoint_is_an_error(tmp_path: Path) -> None:
    cfg = load_config(None, [*TINY, "optim.max_steps=2"])
    with pytest.raises(InputError, match="nothing to resume"):
        train(cfg, tmp_path, resume=True)


def test_nan_loss_stops_naming_the_step_and_keeps_last_good_checkpoint(tmp_path: Path) -> None:
    cfg = load_config(None, [*TINY, "optim.max_steps=10", "trainer.checkpoint_every=2"])
    with pytest.raises(
        InputError,
        match=r"non-finite at step 4 .*conv1\.weight.*last good checkpoint \(step 2\).*--override-lr",
    ):
        train(cfg, tmp_path, extra_callbacks=[PoisonWeights(at=4)])  # poisoned weights are never saved
    ckpt = load_checkpoint(tmp_path / "checkpoints" / "last.ckpt")
    assert ckpt["global_step"] == 2
    assert all(torch.isfinite(v).all() for v in ckpt["state_dict"].values() if isinstance(v, torch.Tensor))
    assert (tmp_path / "monitor.json").is_file()  # what was measured is kept


def test_checkpoint_from_another_model_names_the_keys(tmp_path: Path) -> None:
    cfg = load_config(None, [*TINY, "optim.max_steps=2", "trainer.checkpoint_every=2"])
    train(cfg, tmp_path)
    other = load_config(None, [*TINY, "optim.max_steps=4", "model.projector=linear",
                               "model.projector_kwargs={out_dim: 8}"])  # fmt: skip
    (tmp_path / "metrics.json").unlink()
    saved = (tmp_path / "config.yaml").read_text()
    # the resumed run keeps the checkpoint's config: another architecture is refused naming the keys
    with pytest.raises(ConfigError, match=r"--resume .*changes model\.projector mlp -> linear.*"
                       r"optim\.max_steps 2 -> 4"):  # fmt: skip
        train(other, tmp_path, resume=True)
    assert (tmp_path / "config.yaml").read_text() == saved  # a rejected resume rewrites nothing
    ckpt = load_checkpoint(tmp_path / "checkpoints" / "last.ckpt")
    from dimcollapse.training.parts import module_from_record

    module = module_from_record(to_dict(other), ckpt["hyper_parameters"]["data_info"])
    with pytest.raises(ConfigError, match=r"another model.*missing keys: model\.projector\.linear\.weight"
                       r".*unexpected keys: .*model\.projector\.net"):  # fmt: skip
        check_compatible(module.state_dict(), ckpt["state_dict"], "last.ckpt")
    wider = load_config(None, [*TINY, "model.projector_kwargs={hidden_dim: 32, out_dim: 8}"])
    module = module_from_record(to_dict(wider), ckpt["hyper_parameters"]["data_info"])
    with pytest.raises(
        ConfigError, match=r"shape mismatches.*model\.projector\.net\.0\.weight \(16, 8\) vs \(32, 8\)"
    ):
        check_compatible(module.state_dict(), ckpt["state_dict"], "last.ckpt")
    with pytest.raises(ConfigError, match="unexpected keys: extra"):
        check_compatible({"a": torch.zeros(1)}, {"a": torch.zeros(1), "extra": torch.zeros(1)}, "x.ckpt")


def test_atomic_checkpoint_io_keeps_previous_file_on_failure(tmp_path: Path) -> None:
    io = AtomicCheckpointIO()
    path = tmp_path / "c.ckpt"
    io.save_checkpoint({"state_dict": {"w": torch.ones(2)}}, path)

    class Unpicklable:
        def __reduce__(self) -> Any:
            raise RuntimeError("cannot pickle")

    with pytest.raises(RuntimeError, match="cannot pickle"):
        io.save_checkpoint({"state_dict": {"w": torch.zeros(2)}, "bad": Unpicklable()}, path)
    assert torch.equal(load_checkpoint(path)["state_dict"]["w"], torch.ones(2))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.ckpt"]  # no temp file left behind
    path.write_bytes(b"garbage")
    with pytest.raises(InputError, match="corrupt"):
        load_checkpoint(path)
    with pytest.raises(InputError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.ckpt")


def test_step_batch_sampler_is_a_function_of_the_step_and_splits_ranks() -> None:
    from dimcollapse.training.datamodule import StepBatchSampler

    step = {"s": 0}
    samplers = [
        StepBatchSampler(50, 4, seed=3, start_step=lambda: step["s"], rank=r, world=2) for r in (0, 1)
    ]
    assert len(samplers[0]) == 6  # 50 // (4 x 2)
    epoch0 = [list(iter(s)) for s in samplers]
    for pos in range(6):
        a, b = epoch0[0][pos], epoch0[1][pos]
        assert len(a) == len(b) == 4 and not set(a) & set(b)  # ranks see disjoint rows
        assert a == samplers[0].indices(pos) and b == samplers[1].indices(pos)
    seen = [i for pos in range(6) for r in (0, 1) for i in epoch0[r][pos]]
    assert len(set(seen)) == 48  # no row twice within an epoch
    step["s"] = 9  # resumed in epoch 1 at position 3: the remaining steps of that epoch, as uninterrupted
    resumed = list(iter(samplers[0]))
    assert resumed == [samplers[0].indices(s) for s in range(9, 12)]
    assert samplers[0].indices(6) != samplers[0].indices(0)  # a new permutation each epoch


@pytest.mark.ddp
def test_two_process_ddp_spawn_run(tmp_path: Path) -> None:
    cfg = load_config(None, [*TINY, "data.batch_size=8", "optim.max_steps=4", "trainer.devices=2",
                             "trainer.strategy=ddp_spawn", "trainer.checkpoint_every=2"])  # fmt: skip
    m = train(cfg, tmp_path)
    assert m["steps"] == 4 and 0.0 <= m["knn_k5_top1"] <= 1.0
    assert load_checkpoint(tmp_path / "checkpoints" / "final.ckpt")["global_step"] == 4
    history = json.loads((tmp_path / "monitor.json").read_text())["history"]
    assert [h["step"] for h in history] == [1, 2, 4]  # the first step, then every 2


@pytest.mark.ddp
def test_sync_batchnorm_on_cpu_uses_global_batchnorm(tmp_path: Path) -> None:
    """torch's SyncBatchNorm rejects CPU tensors; on CPU the model's BatchNorms become GlobalBatchNorm."""
    from dimcollapse.utils.batchnorm import GlobalBatchNorm1d, GlobalBatchNorm2d

    cfg = load_config(None, [*TINY, "data.batch_size=8", "optim.max_steps=2", "trainer.devices=2",
                             "trainer.strategy=ddp_spawn", "trainer.sync_batchnorm=true"])  # fmt: skip
    m = train(cfg, tmp_path)
    assert m["steps"] == 2
    from dimcollapse.training.parts import module_from_record

    ckpt = load_checkpoint(tmp_path / "checkpoints" / "final.ckpt")
    module = module_from_record(ckpt["hyper_parameters"]["config"], ckpt["hyper_parameters"]["data_info"])
    bns = [mod for mod in module.modules() if isinstance(mod, torch.nn.modules.batchnorm._BatchNorm)]
    assert bns and all(isinstance(b, (GlobalBatchNorm1d, GlobalBatchNorm2d)) for b in bns)
