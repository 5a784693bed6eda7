"""A training step makes no host sync outside logging steps (losses, statistics and the non-finite check
stay on the device), on one process and on 2 gloo ranks (batch sizes known from the sampler, the stop
agreement on the host); the logged loss is the mean over ranks; and the deferred non-finite check still
names the step and the term and never lets a state reached through a non-finite loss into a checkpoint."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import lightning as L
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


# the stop-signal agreement reduces a CPU tensor over its own gloo group (HostMax): a host value, never a
# device read (test_the_stop_agreement_is_a_host_value below)
def _host_agreement_site() -> str:
    """'<file>:<line>' of HostMax's one host read (utils/distributed.py)."""
    from dimcollapse.utils import distributed

    lines = Path(distributed.__file__).read_text().splitlines()
    line = next((i for i, text in enumerate(lines, 1) if "agreed = int(self._flag[0])" in text), -1)
    return f"dimcollapse/utils/distributed.py:{line}"


CASES = {
    "byol_so_whitening": [
        "objective.name=byol",
        "objective.kwargs={hidden_dim: 16}",
        "data.views.recipe=byol",
        "regularizers=[{name: so, kwargs: {weight: 1.0e-3, warmup_epochs: 1}},"
        " {name: whitening, kwargs: {weight: 0.1}}]",
    ],
    "msn_masked_step": ["objective.name=msn", "objective.kwargs={n_prototypes: 16}"],  # its own step
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


class _RankRecorder(HostSyncCounter):
    """The counter in every rank of a spawned run, plus each rank's own loss per step; written to files."""

    def __init__(self, out: Path) -> None:
        super().__init__()
        self.out, self.losses = out, {}

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: Any, outputs: Any, batch: Any, idx: int
    ) -> None:
        super().on_train_batch_end(trainer, pl_module, outputs, batch, idx)
        self.losses[int(trainer.global_step) - 1] = outputs["loss"].detach().double().item()

    def on_train_end(self, trainer: L.Trainer, pl_module: Any) -> None:
        super().on_train_end(trainer, pl_module)
        record = {"syncs": self.per_step, "losses": self.losses}
        (self.out / f"rank{trainer.global_rank}.json").write_text(json.dumps(record))


@pytest.mark.ddp
@pytest.mark.slow
def test_two_ranks_no_host_sync_outside_logging_steps_and_the_logged_loss_is_the_global_mean(
    tmp_path: Path,
) -> None:
    ddp = ["trainer.strategy=ddp_spawn", "trainer.devices=2", "trainer.accelerator=cpu"]
    cfg = load_config(None, [*TINY, *CASES["simclr_srip_koleo_probe"], *ddp])
    train(cfg, tmp_path / "run", extra_callbacks=[_RankRecorder(tmp_path)])
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    agreement = _host_agreement_site()
    for rank, record in enumerate(ranks):
        syncs = {int(k): v for k, v in record["syncs"].items()}
        for step in (1, 2, 4):  # not logging steps (3, 5), nor the set-up step 0
            left = [c for c in syncs[step] if not any(h in c for h in HOST_SIDE)]
            assert [c for c in left if not c.endswith(agreement)] == [], (rank, step, left)
    with open(tmp_path / "run" / "logs" / "version_0" / "metrics.csv") as f:
        logged = {int(r["step"]): float(r["train/loss"]) for r in csv.DictReader(f) if r["train/loss"]}
    assert 3 in logged  # the logging step the logger writes (log_every 4)
    for step, value in logged.items():
        own = [record["losses"][str(step)] for record in ranks]
        assert abs(own[0] - own[1]) > 1e-3 * abs(own[0])  # the ranks' shares differ: the test can tell
        # the mean of two float32 values, rounded once to float32
        assert value == pytest.approx(sum(own) / 2, rel=2**-22), (step, own)


def _agreement_worker(rank: int, init: str, out: str) -> None:
    import torch.distributed as dist

    from dimcollapse.utils.distributed import HostMax

    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=2)
    agree = HostMax()
    agree.open()
    posted = [[0, 3, 0, 0], [0, 0, 5, 0]][rank]  # rank 0 gets signal 3 before round 1, rank 1 5 before 2
    seen, where = [], []
    for value in posted:
        seen.append(agree.exchange(value))
        if agree._flag is not None:
            where.append(str(agree._flag.device))
    backend = str(dist.get_backend(agree._group))
    agree.close()
    dist.destroy_process_group()
    Path(f"{out}{rank}.json").write_text(json.dumps({"seen": seen, "where": where, "backend": backend}))


@pytest.mark.ddp
def test_the_stop_agreement_is_a_host_value_agreed_one_round_late(tmp_path: Path) -> None:
    """HostMax: every rank reads the same max of the previous round; the rounds end at the first non-zero
    max; the reduced tensor is a CPU tensor on a gloo group (never a device read). One process: at once."""
    import torch.multiprocessing as mp

    from dimcollapse.utils.distributed import HostMax

    assert HostMax().exchange(15) == 15
    mp.spawn(_agreement_worker, args=(f"file://{tmp_path}/init", str(tmp_path / "r")), nprocs=2)
    for rank in (0, 1):
        got = json.loads((tmp_path / f"r{rank}.json").read_text())
        assert got["seen"] == [0, 0, 3, 0], got  # round 1's 3 read in round 2; then new rounds start at 0
        assert set(got["where"]) == {"cpu"} and got["backend"] == "gloo"


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
