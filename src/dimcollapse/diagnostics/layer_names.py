"""The one grammar that names weight layers: in the monitor, ``analyze --layers`` and the regularizers.

A pattern is a shell pattern (``fnmatch``, case-sensitive: ``layer4.*``, ``encoder.layer.*.attention.*``)
matched against the layer's full ``named_modules`` name, or, for a layer under ``backbone.``, also against
the name without that prefix; or ``re:<regex>``, searched anywhere in the full name
(``re:layer[34]\\.0``).
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Sequence

from dimcollapse.errors import ConfigError

PATTERN_HELP = "a glob (e.g. 'layer4.*' or 'projection_head.*') or a regex prefixed with 're:'"


def name_matches(name: str, pattern: str) -> bool:
    """True when layer ``name`` matches ``pattern`` (see the module docstring for the grammar); a ``re:``
    pattern that is no regular expression raises ConfigError."""
    if pattern.startswith("re:"):
        try:
            return re.search(pattern[3:], name) is not None
        except re.error as e:
            raise ConfigError(f"layer pattern '{pattern}' is no valid regular expression ({e}).") from None
    short = name.split("backbone.", 1)[1] if name.startswith("backbone.") else name
    return fnmatch.fnmatchcase(name, pattern) or fnmatch.fnmatchcase(short, pattern)


def matching(names: Iterable[str], patterns: str | Sequence[str]) -> list[str]:
    """The names that match any of ``patterns``, in the order given."""
    pats = [patterns] if isinstance(patterns, str) else list(patterns)
    return [n for n in names if any(name_matches(n, p) for p in pats)]
