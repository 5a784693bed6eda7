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
- a whole pickled module only with ``trust_pickle=True`` (unpickling runs code from the file).
Every failure is an InputError / ConfigError that says what to pass.
"""

from __future__ import annotations

import importlib
import pickle
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from dimcollapse.errors import ConfigError, InputError

MODULE_KEY_ENDINGS = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


@dataclass
class LoadedModel:
    """A model in eval mode on the CPU with where it came from (``kind``: lightning, state_dict, ...).

    ``forward(module, x)`` is how the model embeds a batch when the user names nothing (``None``:
    ``module(x)``); ``preprocess`` the input settings the model was trained with (``image_size``,
    ``channels``, ``mean``, ``std``), used unless the user overrides them.
    """

    module: nn.Module
    kind: str
    source: str
    info: dict[str, Any] = field(default_factory=dict)
    forward: Callable[[nn.Module, Any], Any] | None = None
    preprocess: dict[str, Any] = field(default_factory=dict)


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
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as z:
        names = z.namelist()
    return any("/code/" in n for n in names) and any(n.endswith("constants.pkl") for n in names)


def import_object(spec: str) -> Any:
    """Import ``"package.module:Name"``; errors say how to make it importable."""
    mod_name, _, attr = spec.partition(":")
    if not mod_name or not attr:
        raise ConfigError(f"'{spec}' is not 'package.module:Class'; pass e.g. --arch mypkg.models:Encoder.")
    try:
        module = importlib.import_module(mod_name)
    except ImportError as e:
        raise ConfigError(
            f"cannot import '{mod_name}' ({e}); install the package or add its folder to PYTHONPATH."
        ) from None
    obj = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ConfigError(f"'{mod_name}' has no attribute '{attr}'; check the class name in --arch.")
        obj = getattr(obj, part)
    return obj


def build_arch(arch: str, kwargs: Mapping[str, Any] | None = None) -> nn.Module:
    """An untrained model: ``"package.module:Class"`` called with kwargs, or a registered backbone name."""
    kw = dict(kwargs or {})
    if ":" in arch:
        factory = import_object(arch)
    else:
        import dimcollapse.models  # noqa: F401  (registers the backbones)
        from dimcollapse.registry import get

        factory = get("backbone", arch)
    try:
        model = factory(**kw)
    except TypeError as e:
        raise ConfigError(
            f"cannot build '{arch}' with {kw or 'no arguments'} ({e}); pass --arch-kwargs."
        ) from None
    if not isinstance(model, nn.Module):
        raise ConfigError(f"'{arch}' built a {type(model).__name__}, not a torch.nn.Module.")
    return model


def _candidates(state: Mapping[str, Any], expected: set[str]) -> list[dict[str, Any]]:
    """The state_dict as is, then with a common leading prefix ('module.', 'model.backbone.', ...) removed."""
    out = [dict(state)]
    keys = list(state)
    parts = keys[0].split(".") if keys else []
    for depth in range(1, len(parts)):
        prefix = ".".join(parts[:depth]) + "."
        sub = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
        if sub and set(sub) & expected:
            out.append(sub)
    return out


def load_weights(model: nn.Module, state: Mapping[str, Any], source: str) -> dict[str, Any]:
    """Load ``state`` into ``model`` (trying common prefixes); a mismatch names the keys and what to pass."""
    expected = model.state_dict()
    best: dict[str, Any] | None = None
    for cand in _candidates(state, set(expected)):
        fits = set(cand) >= set(expected) and all(
            not isinstance(cand[k], torch.Tensor) or cand[k].shape == v.shape for k, v in expected.items()
        )
        if fits:
            model.load_state_dict({k: cand[k] for k in expected})
            return {"ignored_keys": sorted(set(cand) - set(expected))}
        if best is None or len(set(cand) & set(expected)) > len(set(best) & set(expected)):
            best = cand
    assert best is not None
    missing = sorted(set(expected) - set(best))
    shapes = [k for k in set(expected) & set(best) if best[k].shape != expected[k].shape]
    detail = (
        (f"missing {', '.join(missing[:5])}" + (" ..." if len(missing) > 5 else ""))
        if missing
        else f"shape mismatches: {', '.join(sorted(shapes)[:5])}"
    )
    raise ConfigError(
        f"the weights in '{source}' do not fit the architecture ({detail}; the file has e.g. "
        f"{', '.join(list(state)[:3])}). Pass the --arch and --arch-kwargs the model was trained with."
    )


def _torch_load(path: Path, trust_pickle: bool) -> Any:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        if not trust_pickle:
            first = str(e).splitlines()[0][:160]
            raise InputError(
                f"'{path}' holds pickled Python objects (e.g. a whole model), which are not loaded by "
                f"default because unpickling runs code from the file ({first}). If you trust the file, pass "
                "--trust-pickle; otherwise save model.state_dict() and pass --arch."
            ) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError) as e:
        raise InputError(
            f"cannot read '{path}' ({str(e).splitlines()[0][:160]}); is it a torch file?"
        ) from None
    return torch.load(path, map_location="cpu", weights_only=False)


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
    else:
        cls = import_object(arch)
        try:
            module = cls(**{**hp, **kwargs})
        except TypeError as e:
            raise ConfigError(
                f"cannot build {arch} from the checkpoint's hyper-parameters ({e}); "
                "pass the missing ones with --arch-kwargs."
            ) from None
        kind = "lightning"
    info = load_weights(module, ckpt["state_dict"], src)
    info["global_step"] = ckpt.get("global_step")
    return LoadedModel(module.eval(), kind, src, info)


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
    p = Path(path)
    if not p.is_file():
        raise InputError(
            f"model file '{p}' does not exist; pass a .ckpt, state_dict .pt/.pth or TorchScript."
        )
    kwargs, src = dict(arch_kwargs or {}), str(p)
    if is_torchscript(p):
        return LoadedModel(torch.jit.load(str(p), map_location="cpu").eval(), "torchscript", src)
    obj = _torch_load(p, trust_pickle)
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
        model = build_arch(arch, kwargs)
        info = load_weights(model, obj, src)
        return LoadedModel(model.eval(), "state_dict", src, info)
    raise InputError(f"'{p}' holds a {type(obj).__name__}, not a model, checkpoint or state_dict.")


__all__ = [
    "LoadedModel",
    "build_arch",
    "import_object",
    "load_model",
    "load_weights",
    "looks_like_state_dict",
]
