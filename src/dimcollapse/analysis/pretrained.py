"""``--model`` as researchers have it: a ``save_pretrained`` folder, a Hugging Face Hub id, ``timm:NAME``,
``torchvision:NAME`` (and ``--arch timm:NAME`` / ``--arch torchvision:NAME`` for a state_dict file).

- A folder with ``config.json`` or a Hub id (``org/name``): ``transformers.AutoModel.from_pretrained``
  (the local cache first, ``local_files_only``; the network only when ``HF_HUB_OFFLINE`` is not set);
  run as ``model(pixel_values=x, output_hidden_states=True)`` so every block's residual stream is an
  output (``hidden_states.0`` ...); the input size and normalisation come from the folder's
  ``preprocessor_config.json`` (else the model config's ``image_size`` / ``num_channels``).
- ``timm:NAME``: ``timm.create_model(NAME, **arch_kwargs)`` (``pretrained: true, pretrained_cfg_overlay:
  {file: weights.safetensors}`` loads local weights); input size, mean and std from ``pretrained_cfg``.
- ``torchvision:NAME``: ``torchvision.models.NAME(**arch_kwargs)``.
A model that cannot be found is one InputError saying where it was looked for.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from torch import nn

from dimcollapse.analysis.arch import build_arch, call_factory, import_object
from dimcollapse.analysis.loaded import LoadedModel
from dimcollapse.errors import ConfigError, InputError

PREFIXES = ("timm:", "torchvision:", "hf:")


def is_pretrained_spec(spec: str) -> bool:
    """True for ``timm:NAME``, ``torchvision:NAME``, ``hf:ID`` and a Hub-like ``org/name`` that is no path."""
    if spec.startswith(PREFIXES):
        return True
    parts = spec.split("/")
    return len(parts) == 2 and all(parts) and not Path(spec).exists() and not Path(spec).suffix


def _require(name: str) -> Any:
    import importlib

    try:
        return importlib.import_module(name)
    except ImportError as e:
        raise ConfigError(f"'{name}' is not installed here ({e}); install it to load this model.") from None


def _timm_preprocess(model: nn.Module) -> dict[str, Any]:
    cfg = getattr(model, "pretrained_cfg", None) or {}
    size = cfg.get("input_size")
    out: dict[str, Any] = {}
    if size:
        out.update(channels=int(size[0]), image_size=int(size[-1]))
    if cfg.get("mean") is not None:
        out.update(mean=[float(v) for v in cfg["mean"]], std=[float(v) for v in cfg["std"]])
    return out


def build_any(arch: str, kwargs: Mapping[str, Any]) -> tuple[nn.Module, dict[str, Any]]:
    """(untrained model, its preprocessing) of ``timm:NAME``, ``torchvision:NAME`` or any other --arch."""
    if arch.startswith("timm:"):
        timm = _require("timm")
        model = call_factory(lambda **kw: timm.create_model(arch[5:], **kw), arch, kwargs)
        return model, _timm_preprocess(model)
    if arch.startswith("torchvision:"):
        factory = import_object(f"torchvision.models:{arch[len('torchvision:') :]}")
        return call_factory(factory, arch, kwargs), {}
    return build_arch(arch, kwargs), {}


def _hf_preprocess(source: str, model: nn.Module, local: bool) -> dict[str, Any]:
    cfg = getattr(model, "config", None)
    out: dict[str, Any] = {}
    if cfg is not None and isinstance(getattr(cfg, "image_size", None), int):
        out["image_size"] = int(cfg.image_size)
    if cfg is not None and isinstance(getattr(cfg, "num_channels", None), int):
        out["channels"] = int(cfg.num_channels)
    path = Path(source) / "preprocessor_config.json"
    if not path.is_file() and not local:
        try:
            from huggingface_hub import try_to_load_from_cache

            cached = try_to_load_from_cache(source, "preprocessor_config.json")
            path = Path(cached) if isinstance(cached, str) else path
        except ImportError:
            pass
    if path.is_file():
        proc = json.loads(path.read_text())
        if proc.get("image_mean") is not None:
            out.update(mean=list(proc["image_mean"]), std=list(proc["image_std"]))
        size = proc.get("crop_size") or proc.get("size")
        side = size.get("height") or size.get("shortest_edge") if isinstance(size, dict) else size
        if isinstance(side, int):
            out["image_size"] = side
    return out


def _hf_forward(m: nn.Module, x: Any) -> Any:
    return m(pixel_values=x, output_hidden_states=True)


def _from_transformers(source: str, kwargs: Mapping[str, Any]) -> LoadedModel:
    transformers = _require("transformers")
    local = Path(source).is_dir()
    offline = local or os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0")
    try:
        model = transformers.AutoModel.from_pretrained(source, local_files_only=True, **kwargs)
    except ImportError as e:
        raise ConfigError(
            f"transformers cannot build '{source}' here ({str(e).splitlines()[0][:200]})."
        ) from None
    except (OSError, ValueError) as first:
        if offline:
            where = f"folder '{source}'" if local else "the local Hugging Face cache (HF_HUB_OFFLINE is set)"
            why = str(first).splitlines()[0][:200]
            raise InputError(
                f"Hugging Face model '{source}' cannot be loaded from {where} ({why}); "
                "pass a save_pretrained folder or download the model once with network access."
            ) from None
        try:
            model = transformers.AutoModel.from_pretrained(source, **kwargs)
        except (OSError, ValueError) as e:
            raise InputError(
                f"Hugging Face model '{source}' is neither in the local cache nor downloadable "
                f"({str(e).splitlines()[0][:200]}); check the id, or pass a save_pretrained folder."
            ) from None
    return LoadedModel(
        model.eval(), "transformers", source, {}, _hf_forward, _hf_preprocess(source, model, local)
    )


def load_pretrained(spec: str, arch: str | None, kwargs: Mapping[str, Any]) -> LoadedModel:
    """A model named by a folder or a spec (see the module docstring), in eval mode on the CPU."""
    if spec.startswith(("timm:", "torchvision:")):
        model, preprocess = build_any(spec, kwargs)
        return LoadedModel(model.eval(), spec.split(":")[0], spec, {}, None, preprocess)
    p = Path(spec)
    if p.is_dir() and not (p / "config.json").is_file():
        files = sorted(f.name for f in p.iterdir() if f.is_file())[:6]
        raise InputError(
            f"--model '{p}' is a folder without config.json, so not a save_pretrained folder; pass a model "
            f"file in it ({', '.join(files) or 'it is empty'}) or the folder save_pretrained wrote."
        )
    if arch is not None:
        raise ConfigError(f"--arch is for weight files; '{spec}' names its own architecture: drop --arch.")
    return _from_transformers(spec[3:] if spec.startswith("hf:") else spec, kwargs)


__all__ = ["build_any", "is_pretrained_spec", "load_pretrained"]
