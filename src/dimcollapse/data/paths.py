"""Where a dataset's files are looked for: the root argument, $DIMCOLLAPSE_DATA, the dataset's default."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from dimcollapse.errors import InputError

ENV_VAR = "DIMCOLLAPSE_DATA"


def candidate_dirs(
    root: str | os.PathLike[str] | None, subdirs: Sequence[str], defaults: Sequence[str | Path] = ()
) -> list[Path]:
    """Directories searched: root and root/<sub> when a root is given (only there: a root that does not
    exist is an error, never a silent fall-back), else $DIMCOLLAPSE_DATA, its <sub>, then the defaults."""
    bases: list[Path] = []
    if root is not None and str(root) != "":
        given = Path(root).expanduser()
        if not given.is_dir():
            what = "is a file, not a folder" if given.exists() else "does not exist"
            raise InputError(
                f"data.root '{given}' {what}; fix the path (config key data.root), or remove data.root to "
                f"use ${ENV_VAR} or the default data folder."
            )
        return _unique([given, *(given / sub for sub in subdirs)])
    env = os.environ.get(ENV_VAR)
    if env:
        bases.append(Path(env).expanduser())
    out: list[Path] = []
    for base in bases:
        out.append(base)
        out.extend(base / sub for sub in subdirs)
    out.extend(Path(d) for d in defaults)
    return _unique(out)


def _unique(dirs: list[Path]) -> list[Path]:
    seen: set[Path] = set()
    unique = []
    for d in dirs:
        if d not in seen:
            seen.add(d)
            unique.append(d)
    return unique


def find_dir(
    dataset: str,
    root: str | os.PathLike[str] | None,
    required: Sequence[Sequence[str]],
    subdirs: Sequence[str] = (),
    defaults: Sequence[str | Path] = (),
    how_to_get: str = "",
) -> Path:
    """First candidate directory holding every required file; each entry of `required` lists alternatives.

    Missing everywhere -> InputError naming every directory looked in and how to get the data.
    """
    dirs = candidate_dirs(root, subdirs, defaults)
    for d in dirs:
        if d.is_dir() and all(any((d / alt).is_file() for alt in alts) for alts in required):
            return d
    wanted = ", ".join(" or ".join(alts) for alts in required)
    looked = "; ".join(str(d) for d in dirs) or "(nowhere: no root given and $DIMCOLLAPSE_DATA unset)"
    raise InputError(
        f"{dataset} not found: need {wanted}. Looked in: {looked}. "
        f"{how_to_get} Then set data.root=DIR (config key or override) or the environment variable "
        f"${ENV_VAR}."
    )


def first_existing(directory: Path, alternatives: Sequence[str]) -> Path:
    """The first of `alternatives` that exists in `directory` (InputError if none)."""
    for alt in alternatives:
        p = directory / alt
        if p.is_file():
            return p
    raise InputError(f"none of {', '.join(alternatives)} exists in {directory}.")
