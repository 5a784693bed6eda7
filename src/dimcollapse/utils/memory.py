"""A limit on single allocations: refuse one that cannot fit instead of swapping or being killed.

The limit is ``$DIMCOLLAPSE_MAX_ALLOC_GB`` GiB (default 8); the error says the size asked for, the limit
and how to raise it.
"""

from __future__ import annotations

import os

from dimcollapse.errors import InputError

ENV_VAR = "DIMCOLLAPSE_MAX_ALLOC_GB"
DEFAULT_GB = 8.0


def allocation_limit() -> int:
    """Bytes allowed for one array: $DIMCOLLAPSE_MAX_ALLOC_GB GiB (default 8)."""
    text = os.environ.get(ENV_VAR, "")
    try:
        gb = float(text) if text else DEFAULT_GB
    except ValueError:
        raise InputError(f"${ENV_VAR}={text!r} is not a number of GiB; set e.g. {ENV_VAR}=16.") from None
    if not gb > 0:
        raise InputError(f"${ENV_VAR}={text!r} must be a positive number of GiB.")
    return int(gb * 2**30)


def check_allocation(nbytes: int, what: str, fix: str = "") -> None:
    """Raise InputError when allocating ``nbytes`` for ``what`` exceeds the limit (size and limit given)."""
    limit = allocation_limit()
    if nbytes > limit:
        raise InputError(
            f"{what} would need {nbytes / 2**30:.1f} GiB, above the limit of {limit / 2**30:.1f} GiB "
            f"(${ENV_VAR}). {fix or 'Use a smaller input'}; or raise ${ENV_VAR} if the machine has the "
            "memory."
        )
