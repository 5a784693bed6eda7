"""Load a model someone else trained: Lightning checkpoint, state_dict + architecture, TorchScript, pickle.

``load_model(path, arch=None, arch_kwargs=None, trust_pickle=False)`` returns a :class:`LoadedModel`.
- TorchScript (a zip holding ``code/``): ``torch.jit.load``.
- Everything else is read with ``torch.load(weights_only=True)`` (no code from the file runs):
  - a Lightning checkpoint (a dict with ``state_dict`` and Lightning's keys): the module class is
    ``arch`` (``"package.module:Class"``), built with the checkpoint's ``hyper_parameters`` plus
    ``arch_kwargs``; a dimcollapse training checkpoint needs no ``arch``;
  - a plain state_dict (str -> tensor): ``arch`` is a registered backbone name (``resnet18``) or
    ``"package.module:Class"``, built with ``arch_kwargs``; a ``module.`` (DDP) or other common prefix
    is stripped when that makes the keys fit;
- a whole pickled module only with ``trust_pickle=True`` (unpickling runs code from the file);
- a folder (``save_pretrained``), a Hugging Face Hub id, ``timm:NAME`` or ``torchvision:NAME``:
  ``analysis/pretrained.py``.
A Lightning module class is built as ``load_from_checkpoint`` does: the checkpoint's hyper-parameters
filtered to its constructor's signature (the others named in ``info["dropped_hyper_parameters"]``), then
``arch_kwargs``. Every failure is an InputError / ConfigError that says what to pass.
"""

from __future__ import annotations

import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from dimcollapse.analysis.arch import (
    build_arch,
    call_factory,
    constructor_kwargs,
    import_object,
    model_factory,
)
from dimcollapse.analysis.loaded import LoadedModel
from dimcollapse.analysis.torch_file import load_torchscript, read_torch_file
from dimcollapse.analysis.weights_fit import load_weights
from dimcollapse.errors import ConfigError, InputError

MODULE_KEY_ENDINGS = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


def looks_like_state_dict(obj: object) -> bool:
    """True for a mapping str -> tensor whose keys look like module parameters ('conv1.weight', ...)."""
    if not isinstance(obj, Mapping) or not obj:
        return False
    keys = [k for k, v in obj.items() if isinstance(k, str) and isinstance(v, torch.Tensor)]
    if len(keys) != len(obj):
        return False
    module_like = [k for k in keys if k.rsplit(".", 1)[-1] in MODULE_KEY_ENDINGS]
    return len(module_like) * 2 >= len(keys)


def looks_like_lightning(obj: object) -> bool:
    """True for a Lightning checkpoint dict (state_dict plus Lightning's bookkeeping keys)."""
    return (
        isinstance(obj, Mapping)
        and "state_dict" in obj
        and ("pytorch-lightning_version" in obj or "hyper_parameters" in obj or "global_step" in obj)
    )


def is_torchscript(path: Path) -> bool:
    """True for a TorchScript archive (a zip with a ``code/`` folder and ``constants.pkl``)."""
    try:
        if not zipfile.is_zipfile(path):
            return False
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
    except (OSError, zipfile.BadZipFile, IndexError, ValueError):
        return False
    return any("/code/" in n for n in names) and any(n.endswith("constants.pkl") for n in names)


def _from_lightning(
    ckpt: Mapping[str, Any], arch: str | None, kwargs: dict[str, Any], src: str
) -> LoadedModel:
    hp = dict(ckpt.get("hyper_parameters") or {})
    if arch is None and "config" in hp and "data_info" in hp:
        return _from_dimcollapse(src)
    if arch is None:
        raise ConfigError(
            f"'{src}' is a Lightning checkpoint; pass its LightningModule class: --arch package.module:Class "
            "(the checkpoint's hyper-parameters are passed to it; add others with --arch-kwargs)."
        )
    cls = model_factory(arch, need_class=True)
    taken, dropped = constructor_kwargs(cls, hp)
    module = call_factory(cls, arch, {**taken, **kwargs})
    info = load_weights(module, ckpt["state_dict"], src)
    info["global_step"] = ckpt.get("global_step")
    if dropped:
        info["dropped_hyper_parameters"] = dropped
    return LoadedModel(module.eval(), "lightning", src, info)


def _encode_r_z(module: nn.Module, x: Any) -> dict[str, Any]:
    """A dimcollapse SSLModule's embeddings: {"r": backbone(x), "z": projector(r)}."""
    r, z = module.model.encode(x)  # type: ignore[operator, union-attr]
    return {"r": r, "z": z}


def _from_dimcollapse(src: str) -> LoadedModel:
    """A checkpoint of ``dimcollapse train`` (final.ckpt, last.ckpt, a study's run): r and z, its inputs."""
    from dimcollapse.training.checkpoint import load_run  # the one loader of the project's checkpoints

    run = load_run(src)
    views = run.module.views
    preprocess = {
        "image_size": int(views.image_size),
        "channels": int(views.channels),
        "mean": [float(v) for v in views.mean_t.flatten()],
        "std": [float(v) for v in views.std_t.flatten()],
    }
    info = {"global_step": run.checkpoint.get("global_step"), "trained_on": run.config.data.name}
    return LoadedModel(run.module, "dimcollapse", src, info, _encode_r_z, preprocess)


def load_model(
    path: str | Path,
    arch: str | None = None,
    arch_kwargs: Mapping[str, Any] | None = None,
    trust_pickle: bool = False,
) -> LoadedModel:
    """A model from ``path`` (see the module docstring), in eval mode on the CPU."""
    from dimcollapse.analysis.pretrained import is_pretrained_spec, load_pretrained

    p = Path(path)
    kwargs, src = dict(arch_kwargs or {}), str(p)
    if p.is_dir() or is_pretrained_spec(str(path)):
        return load_pretrained(str(path), arch, kwargs)
    if not p.is_file():
        raise InputError(
            f"model file '{p}' does not exist; pass a .ckpt, a state_dict .pt/.pth, TorchScript, a "
            "save_pretrained folder, a Hugging Face id, timm:NAME or torchvision:NAME."
        )
    if is_torchscript(p):
        return LoadedModel(load_torchscript(p).eval(), "torchscript", src)
    obj = read_torch_file(p, trust_pickle)
    if isinstance(obj, nn.Module):
        return LoadedModel(obj.eval(), "pickle", src)
    if looks_like_lightning(obj):
        return _from_lightning(obj, arch, kwargs, src)
    if isinstance(obj, Mapping):
        for key in ("state_dict", "model", "model_state_dict"):
            if key in obj and looks_like_state_dict(obj[key]):
                obj = obj[key]
                break
    if looks_like_state_dict(obj):
        if arch is None:
            raise ConfigError(
                f"'{p}' is a state_dict (weights without the architecture); pass --arch: a registered "
                "backbone (e.g. resnet18) or package.module:Class, with --arch-kwargs if it needs arguments."
            )
        from dimcollapse.analysis.pretrained import build_any

        model, preprocess = build_any(arch, kwargs)
        info = load_weights(model, obj, src)
        return LoadedModel(model.eval(), "state_dict", src, info, preprocess=preprocess)
    raise InputError(f"'{p}' holds a {type(obj).__name__}, not a model, checkpoint or state_dict.")


__all__ = [
    "LoadedModel",
    "build_arch",
    "import_object",
    "load_model",
    "load_weights",
    "looks_like_state_dict",
]
