"""One registry for every named component, so configs and users name them the same way.

    from dimcollapse.registry import build, names
    loss = build("objective", "simclr", temperature=0.5)
    names("projector")  # -> ['constant_subvector', 'diagonal', ...]

Kinds: "backbone", "projector", "objective", "regularizer", "dataset".
Components register themselves with the ``register(kind, name)`` decorator in their own module;
``build`` and ``names`` import the component packages on first use.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from typing import Any, TypeVar

from dimcollapse.errors import ConfigError, unknown_name

KINDS: dict[str, str] = {
    "backbone": "dimcollapse.models",
    "projector": "dimcollapse.models",
    "objective": "dimcollapse.objectives",
    "regularizer": "dimcollapse.regularizers",
    "dataset": "dimcollapse.data",
}

_REGISTRY: dict[str, dict[str, Callable[..., Any]]] = {kind: {} for kind in KINDS}
_loaded: set[str] = set()

T = TypeVar("T", bound=Callable[..., Any])


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise unknown_name("component kind", kind, list(KINDS))


def register(kind: str, name: str) -> Callable[[T], T]:
    """Decorator: register a class or factory under (kind, name)."""
    _check_kind(kind)

    def deco(obj: T) -> T:
        existing = _REGISTRY[kind].get(name)
        if existing is not None and existing is not obj:
            raise ConfigError(f"{kind} '{name}' is registered twice ({existing!r} and {obj!r}).")
        _REGISTRY[kind][name] = obj
        return obj

    return deco


def _load(kind: str) -> None:
    module = KINDS[kind]
    if module not in _loaded:
        importlib.import_module(module)
        _loaded.add(module)


def names(kind: str) -> list[str]:
    """Sorted names registered under ``kind``."""
    _check_kind(kind)
    _load(kind)
    return sorted(_REGISTRY[kind])


def get(kind: str, name: str) -> Callable[..., Any]:
    """The registered class or factory for (kind, name); unknown names raise ConfigError."""
    _check_kind(kind)
    _load(kind)
    try:
        return _REGISTRY[kind][name]
    except KeyError:
        raise unknown_name(kind, name, list(_REGISTRY[kind])) from None


def keyword_options(factory: Callable[..., Any]) -> list[str] | None:
    """The keyword names ``factory`` accepts, or None when it takes any keyword.

    A factory with ``**kwargs`` declares what they may be in ``keyword_options`` (a class attribute,
    e.g. the regularizers' coefficient-schedule keywords); without it any keyword is accepted.
    """
    try:
        sig = inspect.signature(factory)
    except (TypeError, ValueError):  # builtins without signature
        return None
    params = sig.parameters.values()
    named = [
        p.name
        for p in params
        if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    ]
    if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return named
    extra = getattr(factory, "keyword_options", None)
    return None if extra is None else named + [k for k in extra if k not in named]


def build(kind: str, name: str, **kwargs: Any) -> Any:
    """Instantiate component (kind, name) with ``kwargs``; bad keyword names raise ConfigError."""
    factory = get(kind, name)
    valid = keyword_options(factory)
    if valid is not None:
        bad = sorted(set(kwargs) - set(valid))
        if bad:
            raise ConfigError(
                f"{kind} '{name}' got unknown option(s) {', '.join(bad)}. "
                f"Valid options: {', '.join(valid) or '(none)'}."
            )
    return factory(**kwargs)
