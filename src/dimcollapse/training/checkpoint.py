"""Checkpoints: atomic writes (temp file + rename) via Lightning's CheckpointIO, safe loading, key checks,
and ``load_run``: the one way back from a checkpoint to the run's module and config."""

from __future__ import annotations

import logging
import os
import pickle
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.pytorch.callbacks import ModelCheckpoint

from dimcollapse.errors import ConfigError, DivergedError, InputError
from dimcollapse.training.config import RunConfig
from dimcollapse.training.resume import stored_config
from dimcollapse.utils.atomic import atomic_save

log = logging.getLogger("dimcollapse.checkpoint")


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning CheckpointIO whose files appear atomically: torch.save to a temp sibling, fsync, rename."""

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None
    ) -> None:
        """Write ``checkpoint`` to ``path`` atomically (a crash leaves the previous file intact)."""
        if storage_options is not None:
            raise TypeError("AtomicCheckpointIO does not take storage_options.")
        atomic_save(path, lambda fh: torch.save(checkpoint, fh))


def _tensors(obj: Any) -> Any:
    """Every floating-point tensor inside nested dicts / lists / tuples (an optimizer's state)."""
    if isinstance(obj, torch.Tensor):
        if obj.is_floating_point() or obj.is_complex():
            yield obj
    elif isinstance(obj, dict):
        for v in obj.values():
            yield from _tensors(v)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            yield from _tensors(v)


def nonfinite_state(module: torch.nn.Module, optimizers: list[Any] | tuple[Any, ...] = ()) -> list[str]:
    """Names of the parameters, buffers (e.g. BatchNorm running_var) and optimizer states holding NaN/Inf."""
    bad = [f"parameter {n}" for n, p in module.named_parameters() if not bool(torch.isfinite(p).all())]
    bad += [
        f"buffer {n}"
        for n, b in module.named_buffers()
        if b.is_floating_point() and not bool(torch.isfinite(b).all())
    ]
    for i, opt in enumerate(optimizers):
        if any(not bool(torch.isfinite(t).all()) for t in _tensors(opt.state_dict().get("state", {}))):
            bad.append(f"optimizer {i} state")
    return bad


def describe_bad(bad: list[str], limit: int = 3) -> str:
    """'parameter a, buffer b (+4 more)'."""
    more = f" (+{len(bad) - limit} more)" if len(bad) > limit else ""
    return ", ".join(bad[:limit]) + more


class FiniteModelCheckpoint(ModelCheckpoint):
    """ModelCheckpoint that never overwrites a good checkpoint with a non-finite state.

    The module's non-finite loss flag (``SSLModule.check_finite``, kept on the device between logging
    steps), then parameters, buffers (BatchNorm running statistics) and the optimizer state are checked
    before every save; a non-finite state is not written and stops training (DivergedError).
    ``last_good_step`` is the global step of the last checkpoint written; ``first_bad`` the step and names
    of the refused state.
    """

    last_good_step: int | None = None
    first_bad: tuple[int, list[str]] | None = None

    def _save_checkpoint(self, trainer: Any, filepath: str) -> None:
        check_loss = getattr(trainer.lightning_module, "check_finite", None)
        if callable(check_loss):  # a loss that became non-finite since the last read: name its step
            check_loss()
        bad = nonfinite_state(trainer.lightning_module, list(trainer.optimizers))
        if bad:
            step = int(trainer.global_step)
            if self.first_bad is None:
                self.first_bad = (step, bad)
            what = describe_bad(bad)
            log.warning("step %d: %s hold NaN/Inf; checkpoint %s not written", step, what, filepath)
            raise DivergedError(f"the model state became non-finite at step {step}", step, what)
        super()._save_checkpoint(trainer, filepath)
        self.last_good_step = int(trainer.global_step)


def load_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a checkpoint written by a dimcollapse run; missing or corrupt files raise InputError."""
    p = Path(path)
    if not p.is_file():
        raise InputError(
            f"checkpoint '{p}' does not exist; pass the .ckpt file of a run (runs/<name>/checkpoints)."
        )
    try:
        ckpt = torch.load(p, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        if "Unsupported global" in str(e) or "GLOBAL " in str(e):
            raise InputError(
                f"'{p}' holds pickled Python objects (e.g. a whole model saved with torch.save(model)), "
                "not a checkpoint written by dimcollapse train; it is not loaded because unpickling can run "
                "code. Pass the .ckpt of a run (runs/<name>/checkpoints/final.ckpt)."
            ) from None
        raise _unreadable(p, ValueError("not a valid torch file")) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError) as e:
        raise _unreadable(p, e) from None
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        raise InputError(f"checkpoint '{p}' holds no 'state_dict'; it was not written by dimcollapse train.")
    return ckpt


def _unreadable(p: Path, e: BaseException) -> InputError:
    first = (str(e).splitlines()[0] if str(e) else type(e).__name__)[:200]
    return InputError(
        f"checkpoint '{p}' cannot be read ({first}); it is truncated, corrupt or not a torch "
        "checkpoint. Restore it from a copy, or start a fresh run in another --out folder."
    )


def save_if_finite(trainer: Any, path: str | os.PathLike[str]) -> list[str]:
    """Save the trainer's full state to ``path`` unless it holds NaN/Inf; returns what was non-finite."""
    bad = nonfinite_state(trainer.lightning_module, list(trainer.optimizers))
    if not bad:
        trainer.save_checkpoint(str(path), weights_only=False)
    else:
        log.warning("step %d: %s hold NaN/Inf; %s not written", trainer.global_step, describe_bad(bad), path)
    return bad


def state_dict_mismatch(
    expected: dict[str, Any], found: dict[str, Any]
) -> tuple[list[str], list[str], list[str]]:
    """(missing keys, unexpected keys, keys whose tensor shapes differ) of ``found`` against ``expected``."""
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    shapes = []
    for key in sorted(set(expected) & set(found)):
        a, b = expected[key], found[key]
        if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.shape != b.shape:
            shapes.append(f"{key} {tuple(b.shape)} vs {tuple(a.shape)}")
    return missing, unexpected, shapes


def _listing(keys: list[str], limit: int = 8) -> str:
    more = f" (+{len(keys) - limit} more)" if len(keys) > limit else ""
    return ", ".join(keys[:limit]) + more


def check_compatible(expected: dict[str, Any], found: dict[str, Any], source: str) -> None:
    """Raise ConfigError naming the mismatching keys when ``found`` (from ``source``) does not fit."""
    missing, unexpected, shapes = state_dict_mismatch(expected, found)
    if not (missing or unexpected or shapes):
        return
    parts = []
    if missing:
        parts.append(f"missing keys: {_listing(missing)}")
    if unexpected:
        parts.append(f"unexpected keys: {_listing(unexpected)}")
    if shapes:
        parts.append(f"shape mismatches (checkpoint vs model): {_listing(shapes)}")
    raise ConfigError(
        f"checkpoint '{source}' was saved from another model; " + "; ".join(parts) + ". Use the config the "
        "checkpoint was trained with (its config.yaml), or start a fresh run in another --out folder."
    )


@dataclass
class LoadedRun:
    """A dimcollapse run rebuilt from its checkpoint (``load_run``)."""

    module: Any  # SSLModule with the checkpoint's weights, in eval mode
    config: RunConfig
    data_info: dict[str, Any]  # the data facts the run was trained on (DataInfo fields)
    checkpoint: dict[str, Any]  # the raw checkpoint (global_step, callbacks, ...)


def load_run(path: str | os.PathLike[str]) -> LoadedRun:
    """The one loader of a dimcollapse training checkpoint: read it safely, rebuild the module from the
    config stored in it, check every key and shape, load the weights (InputError / ConfigError otherwise)."""
    from dimcollapse.training.parts import module_from_record

    ckpt = load_checkpoint(path)
    cfg = stored_config(ckpt, str(path))
    hp = ckpt["hyper_parameters"]
    module = module_from_record(hp["config"], hp["data_info"])
    check_compatible(module.state_dict(), ckpt["state_dict"], str(path))
    module.load_state_dict(ckpt["state_dict"])
    return LoadedRun(module.eval(), cfg, dict(hp["data_info"]), ckpt)


def data_info_changes(saved: dict[str, Any], now: dict[str, Any]) -> list[str]:
    """'name old -> new' for every data fact (DataInfo field) that differs from the checkpoint's."""
    return [f"{k} {saved[k]} -> {now[k]}" for k in now if k in saved and saved[k] != now[k]]
