"""Checks that run before a training run writes anything: the machine can run the trainer settings,
the evaluation fits the data, and leftovers of killed atomic writes are removed.

    check_machine(cfg)               # trainer.accelerator / devices / nodes / strategy / precision here
    check_eval_sizes(cfg, n_test)    # eval.lid_k and eval.knn_k against the evaluation split sizes
    clean_stale_temp_files(out)      # .<name>.<pid>.*.tmp of writers that no longer run
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from pathlib import Path

import torch

from dimcollapse.errors import ConfigError
from dimcollapse.training.config import RunConfig, clip
from dimcollapse.utils.atomic import remove_stale_temp_files

CPU_FIX = "run on CPU with the overrides trainer.accelerator=cpu trainer.devices=1"


def _gpu_count() -> int:
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def _requested_devices(devices: object) -> int | None:
    """The number of devices asked for (None for 'auto' / -1: all there are)."""
    if isinstance(devices, (list, tuple)):
        return len(devices)
    text = str(devices).strip()
    if text == "auto" or text == "-1":
        return None
    return int(text)


def _check_accelerator(cfg: RunConfig) -> None:
    """gpu/cuda need a CUDA device (and enough of them); mps needs Apple's backend."""
    t = cfg.trainer
    acc = str(t.accelerator)
    if acc in ("gpu", "cuda"):
        count = _gpu_count()
        if count == 0:
            raise ConfigError(
                f"trainer.accelerator={acc} but this machine has no CUDA GPU (torch {torch.__version__} "
                f"sees none); {CPU_FIX} (the CIFAR and ImageNet-100 recipes ask for a GPU)."
            )
        wanted = _requested_devices(t.devices)
        if wanted is not None and wanted > count:
            raise ConfigError(
                f"trainer.devices={t.devices!r} asks for {wanted} GPUs but this machine has {count}; "
                f"set trainer.devices={count} or fewer."
            )
    if acc == "mps" and not (torch.backends.mps.is_available()):
        raise ConfigError(f"trainer.accelerator=mps but Apple's MPS backend is not available; {CPU_FIX}.")
    if acc == "cpu" and isinstance(t.devices, (list, tuple)):
        raise ConfigError(
            f"trainer.devices={list(t.devices)!r}: on CPU give a number of processes (e.g. 2), not a list."
        )


def _check_nodes(cfg: RunConfig) -> None:
    """trainer.num_nodes > 1 needs a launcher that starts the other nodes' processes (SLURM, torchrun)."""
    from dimcollapse.training.cluster import multi_node_launcher

    nodes = int(cfg.trainer.num_nodes)
    if nodes > 1 and multi_node_launcher() is None:
        raise ConfigError(
            f"trainer.num_nodes={nodes} needs a multi-node launcher and none is running this process: under "
            f"SLURM run `srun -N {nodes} --ntasks-per-node=<trainer.devices> dimcollapse train ...` (or "
            f"`dimcollapse study --executor slurm`), or on each node `torchrun --nnodes {nodes} "
            "--nproc-per-node <trainer.devices> ...`; on one machine set trainer.num_nodes=1."
        )


def check_machine(cfg: RunConfig) -> None:
    """Raise ConfigError (with the fix) when this machine cannot run ``cfg.trainer``'s settings.

    Explicit checks give the common mistakes a precise message; then a Lightning Trainer is built with
    the same accelerator / devices / strategy / precision (it writes nothing) so that whatever Lightning
    refuses is refused now, before the run's folder is touched.
    """
    import lightning as L

    from dimcollapse.training.cluster import cluster_plugins

    _check_accelerator(cfg)
    _check_nodes(cfg)
    t = cfg.trainer
    names = ("lightning.pytorch", "lightning.fabric", "lightning.pytorch.utilities.rank_zero")
    levels = {n: logging.getLogger(n).level for n in names}
    try:
        for n in names:
            logging.getLogger(n).setLevel(logging.ERROR)
        with warnings.catch_warnings(), contextlib.redirect_stdout(None):
            warnings.simplefilter("ignore")
            L.Trainer(
                accelerator=t.accelerator,
                devices=t.devices,
                num_nodes=t.num_nodes,
                strategy=t.strategy,
                precision=t.precision,  # type: ignore[arg-type]
                plugins=cluster_plugins(),
                logger=False,
                enable_checkpointing=False,
                enable_progress_bar=False,
                enable_model_summary=False,
            )
    except Exception as e:  # MisconfigurationException, ValueError, TypeError from Lightning's checks
        first = clip(str(e).splitlines()[0] if str(e) else type(e).__name__, 160)
        raise ConfigError(
            f"trainer settings accelerator={t.accelerator!r}, devices={t.devices!r}, "
            f"strategy={t.strategy!r}, precision={t.precision!r} cannot run on this machine ({first}); fix "
            f"them, e.g. {CPU_FIX} trainer.strategy=auto (or ddp_spawn for several CPU processes)."
        ) from None
    finally:
        for n, level in levels.items():
            logging.getLogger(n).setLevel(level)


def check_eval_sizes(cfg: RunConfig, n_train: int, n_test: int) -> None:
    """The final evaluation's LID needs more than eval.lid_k test rows and kNN needs training rows."""
    k = int(cfg.eval.lid_k)
    if n_test < 3:  # no eval.lid_k >= 2 below n_test exists: say the split is (nearly) empty
        cap = f" (eval.max_test={cfg.eval.max_test})" if cfg.eval.max_test is not None else ""
        raise ConfigError(
            f"the evaluation test split of '{cfg.data.name}' has {n_test} image(s){cap}; the final "
            "evaluation needs at least 3 (LID with eval.lid_k >= 2 neighbours). Give the dataset test "
            "images (e.g. raise data.fraction, or a folder's test split)"
            + (" or raise eval.max_test." if cap else ".")
        )
    if n_test <= k:
        raise ConfigError(
            f"eval.lid_k={k} needs more than {k} test images but the evaluation test split of "
            f"'{cfg.data.name}' has {n_test}; lower eval.lid_k (>= 2, below {n_test}) or use more test data."
        )
    if n_train < 1:
        raise ConfigError(f"the evaluation train split of '{cfg.data.name}' is empty; raise data.fraction.")


def clean_stale_temp_files(out: Path) -> list[Path]:
    """Remove leftovers of killed atomic writes in the run folder and its checkpoints/ (see utils.atomic)."""
    removed: list[Path] = []
    for folder in (out, out / "checkpoints"):
        removed.extend(remove_stale_temp_files(folder))
    return removed
