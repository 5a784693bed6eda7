"""One registry for every named component, so configs and users name them the same way.

    from dimcollapse.registry import build, names
    loss = build("objective", "simclr", temperature=0.5)
    names("projector")  # -> ['constant_subvector', 'diagonal', ...]

Kinds: "backbone", "projector", "objective", "regularizer", "dataset", "step" (the training step's shape).
Components register themselves with the ``register(kind, name)`` decorator in their own module;
``build`` and ``names`` import the component packages on first use.
"""

from __future__ import annotations

import importlib
import inspect
import numbers
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal, TypeVar, overload

from dimcollapse.errors import ConfigError, InputError, allocation_failure, unknown_name

if TYPE_CHECKING:  # mypy checks each registered class against its kind's contract (contracts.py)
    from dimcollapse import contracts

KINDS: dict[str, str] = {
    "backbone": "dimcollapse.models",
    "projector": "dimcollapse.models",
    "objective": "dimcollapse.objectives",
    "regularizer": "dimcollapse.regularizers",
    "dataset": "dimcollapse.data",
    "step": "dimcollapse.training.steps",
}

_REGISTRY: dict[str, dict[str, Callable[..., Any]]] = {kind: {} for kind in KINDS}
_loaded: set[str] = set()

T = TypeVar("T", bound=Callable[..., Any])
BackboneT = TypeVar("BackboneT", bound="Callable[..., contracts.Backbone]")
ProjectorT = TypeVar("ProjectorT", bound="Callable[..., contracts.Projector]")
ObjectiveT = TypeVar("ObjectiveT", bound="Callable[..., contracts.Objective]")
RegularizerT = TypeVar("RegularizerT", bound="Callable[..., contracts.Regularizer]")
StepT = TypeVar("StepT", bound="Callable[..., contracts.TrainingStep]")


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise unknown_name("component kind", kind, list(KINDS))


@overload
def register(kind: Literal["backbone"], name: str) -> Callable[[BackboneT], BackboneT]: ...
@overload
def register(kind: Literal["projector"], name: str) -> Callable[[ProjectorT], ProjectorT]: ...
@overload
def register(kind: Literal["objective"], name: str) -> Callable[[ObjectiveT], ObjectiveT]: ...
@overload
def register(kind: Literal["regularizer"], name: str) -> Callable[[RegularizerT], RegularizerT]: ...
@overload
def register(kind: Literal["step"], name: str) -> Callable[[StepT], StepT]: ...
@overload
def register(kind: str, name: str) -> Callable[[T], T]: ...
def register(kind: str, name: str) -> Callable[[T], T]:
    """Decorator: register a class or factory under (kind, name). For the component kinds mypy checks
    that the class (or the factory's return type) obeys the kind's Protocol in ``contracts.py``."""
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
    _check_numbers(kind, name, factory, kwargs)
    try:
        return factory(**kwargs)
    except (RuntimeError, MemoryError) as e:
        size = allocation_failure(e)
        if size is None:
            raise
        given = ", ".join(f"{k}={v!r}" for k, v in kwargs.items() if isinstance(v, numbers.Number))
        raise InputError(
            f"{kind} '{name}' ({given or 'default options'}) could not allocate its buffers"
            f"{f' ({size})' if size else ''}: more memory than this machine has. Use smaller values for "
            "these options."
        ) from None


_NUMERIC = {"int", "float"}
_NOT_NUMBERS = (str, bytes, list, tuple, set, dict)
_NUMBER_SEQ = re.compile(r"^(list|tuple|Sequence)\[(int|float)(, \.\.\.)?\]$")


def _check_numbers(kind: str, name: str, factory: Callable[..., Any], kwargs: dict[str, Any]) -> None:
    """ConfigError naming the option when a parameter annotated as a number (int / float, maybe | None) or
    a list of numbers gets text or a mapping, e.g. ``base_momentum: abc`` or ``1e5`` (text in YAML 1.1)."""
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return
    for key, value in kwargs.items():
        p = params.get(key)
        if p is None or value is None or isinstance(value, numbers.Number):
            continue
        ann = p.annotation if isinstance(p.annotation, str) else getattr(p.annotation, "__name__", "")
        parts = {a.strip() for a in str(ann).split("|")}
        if parts <= {"None"} | {a for a in parts if _NUMBER_SEQ.match(a)} and parts - {"None"}:
            items = value if isinstance(value, (list, tuple)) else [value] if isinstance(value, str) else []
            if any(isinstance(v, bool) or not isinstance(v, numbers.Number) for v in items):
                raise ConfigError(
                    f"{kind} '{name}': option {key} must be a list of numbers ({ann}), got {value!r}."
                )
            continue
        if parts & _NUMERIC and parts <= _NUMERIC | {"None", "bool"} and isinstance(value, _NOT_NUMBERS):
            raise ConfigError(
                f"{kind} '{name}': option {key} must be a number ({ann}), got {value!r}"
                + (" (YAML reads 1e5 as text: write 100000 or 1.0e5)." if _number_text(value) else ".")
            )


def _number_text(value: object) -> bool:
    """True for a string that Python reads as a number (YAML 1.1 leaves e.g. '1e5' a string)."""
    try:
        float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False
    return isinstance(value, str)
