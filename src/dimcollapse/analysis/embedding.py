"""Which embedding of a model ``analyze --model`` measures: the module run, the output named, the pooling.

- ``embed_function(spec, default)``: ``--embed MODULE`` runs that sub-module (a dotted path such as
  ``backbone`` or ``model.backbone``; an ``nn.Module`` or a module's method such as timm's
  ``forward_features``, which returns every token), else the loader's default (a
  dimcollapse checkpoint gives r and z), else ``module(x)`` (``module(**x)`` for a dict of inputs).
- ``candidate_outputs(out)``: every tensor a forward returns, by name (a tensor is ``"output"``; a dict or
  a Hugging Face ``ModelOutput`` keeps its field names; a tuple gives ``output0``, ``output1`` ...; a
  tuple of tensors inside a field, such as ``hidden_states``, gives ``hidden_states.0`` ...).
- ``pool_rows(t, pool)``: a (B, ...) output as rows: ``cls`` (token 0 of (B, T, E)), ``mean``
  (mean over tokens, or over positions of (B, C, H, W)), ``gap`` (mean over the spatial positions of
  (B, C, ...)), ``flatten`` (B, prod); token-level: ``tokens`` (every token a row, (B * T, E); every
  position of a map a row, (B * H * W, C)) and ``patches`` (the tokens after the model's ``prefix``
  CLS / register tokens, (B * (T - prefix), E)); 2-D outputs are used as they are, (B, C, 1, 1) is
  flattened. ``prefix_tokens(model)`` is that prefix: timm's ``num_prefix_tokens``, a Hugging Face
  config's 1 + ``num_register_tokens``, else 1 (the class token).
- ``default_output``: the output analysed when the user names none: ``last_hidden_state`` pooled at
  ``cls`` for a transformer (the token SSL recipes train; ``pooler_output`` is an extra Linear + tanh),
  else the first output (``r`` for a dimcollapse checkpoint).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import Tensor, nn

from dimcollapse.errors import ConfigError, InputError

POOLS = ("cls", "mean", "gap", "flatten", "tokens", "patches")
TOKEN_POOLS = ("tokens", "patches")  # one row per token, not per input
TRANSFORMER_STATE = "last_hidden_state"


def _model_call(m: nn.Module | Callable[..., Any], x: Any) -> Any:
    if not isinstance(m, nn.Module):  # a module's method (--embed forward_features)
        return m(**x) if isinstance(x, Mapping) else m(x)
    try:
        return m(**x) if isinstance(x, Mapping) else m(x)
    except NotImplementedError:
        raise ConfigError(
            f"{type(m).__name__} has no forward(); name the sub-module that embeds with --embed "
            f"(its children: {', '.join(n for n, _ in m.named_children()) or 'none'})."
        ) from None


def resolve_module(model: nn.Module, spec: str) -> nn.Module | Callable[..., Any]:
    """The sub-module (or a module's method, such as timm's ``forward_features``) at dotted path
    ``spec``; ConfigError naming the children if absent or neither."""
    target: Any = model
    for part in spec.split("."):
        if not part or not hasattr(target, part):
            children = [n for n, _ in target.named_children()] if isinstance(target, nn.Module) else []
            raise ConfigError(
                f"--embed '{spec}': no '{part}' there; the sub-modules are "
                f"{', '.join(children) or '(none)'}. Pass one of them (dotted for deeper ones)."
            )
        target = getattr(target, part)
    if inspect.ismethod(target) and isinstance(target.__self__, nn.Module):
        return target
    if not isinstance(target, nn.Module):
        raise ConfigError(
            f"--embed '{spec}' is a {type(target).__name__}, not a sub-module (nn.Module) of the model; pass "
            f"a module such as {', '.join(n for n, _ in model.named_children()) or 'backbone'}."
        )
    return target


def embed_function(
    spec: str | None, default: Callable[[nn.Module, Any], Any] | None = None
) -> Callable[[nn.Module, Any], Any]:
    """``--embed`` spec -> ``f(model, x)``: the named sub-module, else ``default``, else ``model(x)``."""
    if spec in (None, "", "forward"):
        return default or _model_call
    assert spec is not None
    return lambda m, x: _model_call(resolve_module(m, spec), x)


def candidate_outputs(out: Any) -> dict[str, Tensor]:
    """Every tensor of a forward's result, by name (see the module docstring)."""
    if isinstance(out, Tensor):
        return {"output": out}
    items: list[tuple[str, Any]]
    if isinstance(out, Mapping) or (hasattr(out, "keys") and hasattr(out, "__getitem__")):
        items = [(str(k), out[k]) for k in list(out.keys())]  # a ModelOutput is no Mapping
    elif isinstance(out, (tuple, list)):
        items = [(f"output{i}", v) for i, v in enumerate(out)]
    else:
        raise InputError(
            f"the model returned a {type(out).__name__}, not tensors; name a sub-module with --embed."
        )
    found: dict[str, Tensor] = {}
    for name, v in items:
        if isinstance(v, Tensor) and v.ndim >= 1:
            found[name] = v
        elif isinstance(v, (tuple, list)):
            found.update({f"{name}.{i}": t for i, t in enumerate(v) if isinstance(t, Tensor)})
    if not found:
        raise InputError("the model's output holds no tensor; name a sub-module with --embed.")
    return found


def prefix_tokens(model: nn.Module) -> int:
    """CLS + register tokens before the patch tokens: timm's ``num_prefix_tokens``, a Hugging Face
    config's 1 + ``num_register_tokens``, else 1."""
    own = getattr(model, "num_prefix_tokens", None)
    if isinstance(own, int) and not isinstance(own, bool) and own >= 0:
        return own
    registers = getattr(getattr(model, "config", None), "num_register_tokens", 0)
    return 1 + (registers if isinstance(registers, int) and registers > 0 else 0)


def token_rows(t: Tensor, pool: str, name: str, prefix: int = 1) -> Tensor:
    """Every token of (B, T, E) as a row (B * T, E), or every position of (B, C, ...) as (B * HW, C);
    ``patches`` leaves out the first ``prefix`` tokens of (B, T, E)."""
    if t.ndim == 3:
        if pool == "patches":
            if t.shape[1] <= prefix:
                raise InputError(
                    f"--pool patches: output '{name}' has {t.shape[1]} tokens, none after the {prefix} "
                    "prefix (class / register) tokens; use --pool tokens or cls."
                )
            t = t[:, prefix:]
        return t.reshape(-1, t.shape[-1])
    if pool == "patches":
        raise InputError(f"--pool patches needs tokens (B, T, E); output '{name}' is {tuple(t.shape)}.")
    return t.flatten(2).transpose(1, 2).reshape(-1, t.shape[1])


def pool_rows(t: Tensor, pool: str | None, name: str, prefix: int = 1) -> Tensor:
    """(B, ...) -> rows by ``pool`` (see the module docstring); InputError when it cannot apply."""
    if pool in TOKEN_POOLS and t.ndim >= 3:
        return token_rows(t, pool, name, prefix)
    if t.ndim < 2:
        raise InputError(
            f"output '{name}' has shape {tuple(t.shape)}: one number per input is not an embedding; "
            "choose another with --output or a sub-module with --embed."
        )
    if pool is None:
        if t.ndim == 2:
            return t
        if t[0, 0].numel() == 1:  # (B, C, 1, 1): a pooled feature map
            return t.reshape(t.shape[0], -1)
        hint = "cls or mean" if t.ndim == 3 else "gap or flatten"
        raise InputError(
            f"output '{name}' has shape {tuple(t.shape)}, not (batch, dim); pass --pool {hint} "
            "to make one row per input."
        )
    if pool == "flatten":
        return t.reshape(t.shape[0], -1)
    if t.ndim == 2:
        return t
    if pool == "cls":
        if t.ndim != 3:
            raise InputError(f"--pool cls needs tokens (B, T, E); output '{name}' is {tuple(t.shape)}.")
        return t[:, 0]
    if pool == "mean" and t.ndim == 3:
        return t.mean(1)
    return t.flatten(2).mean(2)  # gap / mean of a feature map (B, C, ...)


def default_output(outputs: Mapping[str, Tensor]) -> tuple[str, str | None]:
    """(name, pool) analysed when the user names none (see the module docstring)."""
    if TRANSFORMER_STATE in outputs and outputs[TRANSFORMER_STATE].ndim == 3:
        return TRANSFORMER_STATE, "cls"
    two_d = [k for k, v in outputs.items() if v.ndim == 2]
    return (two_d[0] if two_d else next(iter(outputs))), None


def choose_output(outputs: Mapping[str, Tensor], name: str | None) -> str:
    """``name`` if the forward returned it, else a ConfigError listing the outputs and their shapes."""
    if name is None or name in outputs:
        return name or default_output(outputs)[0]
    listing = ", ".join(f"{k} {tuple(v.shape)}" for k, v in outputs.items())
    raise ConfigError(f"--output '{name}': the model returned {listing}; pass one of these names.")


def as_float_rows(t: Tensor) -> Tensor:
    """Detached float64 CPU copy of (B, D) rows."""
    return t.detach().to("cpu", torch.float64)


__all__ = [
    "POOLS",
    "TOKEN_POOLS",
    "as_float_rows",
    "candidate_outputs",
    "choose_output",
    "default_output",
    "embed_function",
    "pool_rows",
    "prefix_tokens",
    "resolve_module",
    "token_rows",
]
