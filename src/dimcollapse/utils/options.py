"""Numeric options given through the Python API: checked once, refused with a one-line ConfigError.

A user's ``every='abc'``, ``k=nan`` or ``patience=2.5`` names the option, the value and the range,
instead of a ``ValueError`` / ``TypeError`` from deep inside ``int()`` or a comparison.
"""

from __future__ import annotations

import math
import numbers

from dimcollapse.errors import ConfigError


def int_option(value: object, name: str, minimum: int = 1, allow: tuple[int, ...] = ()) -> int:
    """``value`` as an int >= ``minimum`` (or one of ``allow``); a float must be integral; bools refused."""
    ok = isinstance(value, numbers.Integral) and not isinstance(value, bool)
    if not ok and isinstance(value, numbers.Real) and not isinstance(value, bool):
        ok = math.isfinite(float(value)) and float(value).is_integer()
    if ok and (int(value) in allow or int(value) >= minimum):  # type: ignore[call-overload]
        return int(value)  # type: ignore[call-overload]
    extra = "".join(f" or {a}" for a in allow)
    raise ConfigError(f"{name} must be an integer >= {minimum}{extra}, got {value!r}.")


def float_option(value: object, name: str, low: float, high: float) -> float:
    """``value`` as a finite float in [low, high]; strings, bools and NaN refused."""
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        v = float(value)
        if math.isfinite(v) and low <= v <= high:
            return v
    raise ConfigError(f"{name} must be a number in [{low:g}, {high:g}], got {value!r}.")


__all__ = ["float_option", "int_option"]
