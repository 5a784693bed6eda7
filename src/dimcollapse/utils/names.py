"""Names that become folder names (studies, runs) must stay inside their parent folder."""

from __future__ import annotations

import re

from dimcollapse.errors import ConfigError

_SAFE = re.compile(r"[A-Za-z0-9_.+=-]+")
MAX_LEN = 200  # a file name may have 255 bytes; leave room for suffixes of temporary files


def check_folder_name(name: str, kind: str) -> str:
    """``name`` if it is one safe path component (letters, digits, _ . + = -; no leading '.'); else error."""
    text = str(name)
    if len(text) > MAX_LEN:
        raise ConfigError(
            f"{kind} name {text[:40]!r}... is {len(text)} characters long; folder names are limited to "
            f"{MAX_LEN}: use a shorter name (or fewer grid keys in a study)."
        )
    if not text or text in (".", "..") or not _SAFE.fullmatch(text) or text.startswith("."):
        shown = text if len(text) <= 60 else text[:57] + "..."
        raise ConfigError(
            f"{kind} name {shown!r} cannot be used as a folder name: use letters, digits and _ . + = - "
            "(not starting with '.'), so that its files stay inside their folder."
        )
    return text
