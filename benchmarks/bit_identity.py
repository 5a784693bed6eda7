"""Bit-identity of tiny recipe runs across a code change: record, then compare.

    python benchmarks/bit_identity.py record DIR     # before the change: final state dict + metrics
    python benchmarks/bit_identity.py compare DIR    # after: torch.equal on every tensor, metrics equal

Nested values (``components``) must keep every recorded key; keys added inside them are listed.
Cases cover an EMA target with a weight and a feature regularizer under warm-up (BYOL + SO + whitening),
a teacher-temperature and momentum schedule with multi-crop and LDReg (DINO), queue / freeze schedules
(SwAV) and a contrastive loss with SRIP + KoLeo (SimCLR). Timing and version fields are not compared;
keys a later version adds to metrics.json are listed, every key of the recorded one must be equal.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch

TINY = [
    "data.name=synthetic",
    "data.kwargs={n: 128, image_size: 8, channels: 1, num_classes: 4}",
    "data.batch_size=16",
    "model.backbone_kwargs={widths: [4, 8], blocks: [1, 1]}",
    "model.projector_kwargs={hidden_dim: 16, out_dim: 8}",
    "optim.max_steps=6",
    "optim.warmup_epochs=0.5",
    "monitor.every_n_steps=3",
    "monitor.probe_size=16",
    "monitor.lid_k=4",
    "trainer.progress_bar=false",
    "trainer.tensorboard=false",
    "trainer.checkpoint_every=3",
    "trainer.log_every=2",
    "trainer.seed=7",
    "eval.linear_probe_epochs=5",
    "eval.knn_k=[5]",
]
MULTICROP = "data.views.overrides={local_crops: 2, local_size: 4}"
CASES: dict[str, list[str]] = {
    "byol_so_whitening": [
        "objective.name=byol",
        "objective.kwargs={hidden_dim: 16, base_momentum: 0.9}",
        "data.views.recipe=byol",
        "regularizers=[{name: so, kwargs: {weight: 1.0e-3, warmup_epochs: 1}},"
        " {name: whitening, kwargs: {weight: 0.1}}]",
    ],
    "dino_ldreg": [
        "objective.name=dino",
        "objective.kwargs={n_prototypes: 20, warmup_teacher_temp_epochs: 2, freeze_last_layer_epochs: 0.5}",
        MULTICROP,
        "regularizers=[{name: ldreg, kwargs: {weight: 0.01, warmup_epochs: 0.4, k: 5}}]",
    ],
    "swav": [
        "objective.name=swav",
        "objective.kwargs={n_prototypes: 10, queue_size: 32, queue_start_epoch: 0.5}",
        MULTICROP,
    ],
    "simclr_srip_koleo": [
        "objective.name=simclr",
        "regularizers=[{name: srip, kwargs: {weight: 1.0e-3}}, {name: koleo, kwargs: {weight: 0.05}}]",
    ],
}
UNCOMPARED = {"train_time_s", "fit_time_s", "images_per_s", "versions", "git_commit", "monitor_time_s",
              "monitor_fraction", "eval_time_s"}  # fmt: skip


def run_case(name: str, out: Path) -> dict[str, Any]:
    """Train case ``name`` into ``out``; return its final state dict and comparable metrics."""
    from dimcollapse.training.checkpoint import load_checkpoint
    from dimcollapse.training.config import load_config
    from dimcollapse.training.run import train

    torch.set_num_threads(1)
    metrics = train(load_config(None, [*TINY, *CASES[name]]), out)
    final = load_checkpoint(out / "checkpoints" / "final.ckpt")
    kept = {k: v for k, v in metrics.items() if k not in UNCOMPARED and not k.endswith("_time_s")}
    return {"state_dict": final["state_dict"], "metrics": kept}


def same(a: Any, b: Any) -> bool:
    """torch.equal on tensors (dtype included), recursively through dicts / lists; == otherwise."""
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        ok = isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor)
        return ok and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def kept(want: Any, got: Any) -> bool:
    """Every recorded value is unchanged; a dict may have gained keys (e.g. ``components.step``)."""
    if isinstance(want, dict) and isinstance(got, dict):
        return all(k in got and kept(v, got[k]) for k, v in want.items())
    return bool(want == got)


def new_keys(want: Any, got: Any) -> list[str]:
    """Keys a later version added inside a recorded dict (listed, not a difference)."""
    return sorted(set(got) - set(want)) if isinstance(want, dict) and isinstance(got, dict) else []


def main(argv: list[str]) -> int:
    mode, where = argv[0], Path(argv[1])
    where.mkdir(parents=True, exist_ok=True)
    failures = 0
    for name in CASES:
        with tempfile.TemporaryDirectory() as tmp:
            got = run_case(name, Path(tmp) / name)
        if mode == "record":
            torch.save(got, where / f"{name}.pt")
            print(f"{name}: recorded {len(got['state_dict'])} tensors, {len(got['metrics'])} metrics")
            continue
        want = torch.load(where / f"{name}.pt", weights_only=False)
        sd_w, sd_g = want["state_dict"], got["state_dict"]
        diff = sorted(set(sd_w) ^ set(sd_g))
        unequal = [k for k in sorted(set(sd_w) & set(sd_g)) if not same(sd_w[k], sd_g[k])]
        m_w = json.loads(json.dumps(want["metrics"], sort_keys=True, default=str))
        m_g = json.loads(json.dumps(got["metrics"], sort_keys=True, default=str))
        bad_m = sorted(k for k in set(m_w) & set(m_g) if not kept(m_w[k], m_g[k]))
        added, dropped = sorted(set(m_g) - set(m_w)), sorted(set(m_w) - set(m_g))
        added += sorted(f"{k}.{n}" for k in set(m_w) & set(m_g) for n in new_keys(m_w[k], m_g[k]))
        ok = not diff and not unequal and not bad_m and not dropped
        failures += not ok
        print(f"{name}: {len(sd_g)} tensors, {len(unequal)} unequal, keys differing {diff[:5]}; "
              f"{len(set(m_w) & set(m_g))} metrics compared, differing {bad_m[:8]}, dropped {dropped[:5]}, "
              f"new keys {added[:5]} -> {'IDENTICAL' if ok else 'DIFFERENT'}")  # fmt: skip
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
