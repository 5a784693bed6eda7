"""``--arch``: what may build a model, and which arguments reach it.

- ``"package.module:Name"`` must name an ``nn.Module`` subclass or a Python function that returns an
  ``nn.Module`` (a torchvision / timm builder); anything else (``os:system``, a builtin, a class that is
  not a module) is refused before it is called.
- A registered backbone name (``resnet18``) is built from the registry.
- A file's hyper-parameters reach only a model class's constructor, filtered by its signature
  (``constructor_kwargs``): the keys it does not take are named and dropped, as Lightning's
  ``load_from_checkpoint`` drops them; the user's ``--arch-kwargs`` are passed as given.
"""

from __future__ import annotations

import importlib
import inspect
import os
import sys
from collections.abc import Mapping
from typing import Any

from torch import nn

from dimcollapse.errors import ConfigError


def with_current_folder() -> None:
    """Let imports find modules in the current folder, as ``python -m`` does (the ``dimcollapse`` script
    alone would not): the folder is appended to ``sys.path``, so installed packages keep precedence."""
    here = os.getcwd()
    if here not in sys.path and "" not in sys.path:
        sys.path.append(here)


def import_object(spec: str) -> Any:
    """Import ``"package.module:Name"`` (installed, on PYTHONPATH or in the current folder); errors say how
    to make it importable."""
    mod_name, _, attr = spec.partition(":")
    if not mod_name or not attr:
        raise ConfigError(f"'{spec}' is not 'package.module:Class'; pass e.g. --arch mypkg.models:Encoder.")
    with_current_folder()
    try:
        module = importlib.import_module(mod_name)
    except ImportError as e:
        raise ConfigError(
            f"cannot import '{mod_name}' ({e}); install the package or add its folder to PYTHONPATH."
        ) from None
    obj: Any = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ConfigError(f"'{mod_name}' has no attribute '{attr}'; check the class name in --arch.")
        obj = getattr(obj, part)
    return obj


def model_factory(spec: str, need_class: bool = False) -> Any:
    """The nn.Module subclass (or, unless ``need_class``, model-building function) ``spec`` names."""
    obj = import_object(spec)
    if inspect.isclass(obj):
        if not issubclass(obj, nn.Module):
            raise ConfigError(
                f"--arch '{spec}' is a class but not a torch.nn.Module; pass the model's class."
            )
        return obj
    if need_class:
        raise ConfigError(
            f"--arch '{spec}' is a {type(obj).__name__}, not a class; a Lightning checkpoint needs its "
            "LightningModule class (package.module:Class)."
        )
    if not inspect.isfunction(obj):
        raise ConfigError(
            f"--arch '{spec}' is a {type(obj).__name__}, not a model class or a Python function that builds "
            "one; pass package.module:Class."
        )
    return obj


def constructor_kwargs(cls: Any, params: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """(the keys of ``params`` that ``cls.__init__`` takes, the names of the others); all with **kwargs."""
    try:
        sig = inspect.signature(cls.__init__ if inspect.isclass(cls) else cls)
    except (TypeError, ValueError):
        return {}, sorted(params)
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in sig.parameters.values()):
        return dict(params), []
    names = {
        n
        for n, p in sig.parameters.items()
        if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY) and n != "self"
    }
    return {k: v for k, v in params.items() if k in names}, sorted(k for k in params if k not in names)


def call_factory(factory: Any, spec: str, kwargs: Mapping[str, Any]) -> nn.Module:
    """``factory(**kwargs)`` as an nn.Module; a wrong argument (a string for a number) is a ConfigError."""
    try:
        model = factory(**kwargs)
    except (TypeError, ValueError, RuntimeError, AttributeError) as e:
        first = (str(e).splitlines() or [type(e).__name__])[0][:200]
        raise ConfigError(
            f"cannot build '{spec}' with {dict(kwargs) or 'no arguments'} ({type(e).__name__}: {first}); "
            "check the types and names in --arch-kwargs."
        ) from None
    if not isinstance(model, nn.Module):
        raise ConfigError(f"--arch '{spec}' built a {type(model).__name__}, not a torch.nn.Module.")
    return model


def build_arch(arch: str, kwargs: Mapping[str, Any] | None = None) -> nn.Module:
    """An untrained model: ``"package.module:Class"`` called with kwargs, or a registered backbone name."""
    kw = dict(kwargs or {})
    if ":" in arch:
        factory = model_factory(arch)
    else:
        import dimcollapse.models  # noqa: F401  (registers the backbones)
        from dimcollapse.registry import get

        factory = get("backbone", arch)
    return call_factory(factory, arch, kw)


__all__ = ["build_arch", "call_factory", "constructor_kwargs", "import_object", "model_factory"]
