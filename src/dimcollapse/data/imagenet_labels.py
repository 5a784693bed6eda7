"""Labels of ImageNet-1k's flat validation folder (val/ILSVRC2012_val_00000001.JPEG ...), in the forms the
data is distributed with; each is read into {image stem: WordNet id}:

- ``LOC_val_solution.csv`` (the Kaggle / LOC release): ``ImageId,PredictionString``, the first token of the
  prediction string is the WordNet id;
- a text file of ``<file name> <wnid>`` lines (``val.txt``-style; spaces, tabs or a comma);
- the devkit's ``ILSVRC2012_validation_ground_truth.txt``: line k holds the 1-based ILSVRC2012_ID of
  ILSVRC2012_val_<k:08d>, mapped to WordNet ids by the devkit's ``meta.mat``
  (``synsets``: ILSVRC2012_ID, WNID).

Class indices come from the sorted WordNet ids of train/ (the dataset's job), never from ILSVRC ids.
"""

from __future__ import annotations

import csv
import os
import re
from pathlib import Path

from dimcollapse.errors import InputError

LABEL_FILES = ("LOC_val_solution.csv", "val_labels.txt", "ILSVRC2012_validation_ground_truth.txt")
WNID = re.compile(r"^n\d{8}$")


def stem(name: str) -> str:
    """Name without folder, extension: 'val/ILSVRC2012_val_00000001.JPEG' -> 'ILSVRC2012_val_00000001'."""
    return os.path.splitext(os.path.basename(name.strip()))[0]


def find_labels_file(root: Path) -> Path | None:
    """The first of LABEL_FILES found in root or root/ILSVRC2012_devkit_t12/data (None if none)."""
    for folder in (root, root / "ILSVRC2012_devkit_t12" / "data"):
        for name in LABEL_FILES:
            if (folder / name).is_file():
                return folder / name
    return None


def _read_csv(path: Path) -> dict[str, str]:
    out: dict[str, str] = {}
    with open(path, newline="") as fh:
        for row in csv.reader(fh):
            if not row or row[0] == "ImageId":
                continue
            tokens = row[1].split() if len(row) > 1 else []
            if not tokens:
                raise InputError(f"{path}: row for {row[0]!r} has no WordNet id; is it LOC_val_solution.csv?")
            out[stem(row[0])] = tokens[0]
    return out


def _read_pairs(path: Path, lines: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for n, line in enumerate(lines, 1):
        parts = line.replace(",", " ").split()
        if len(parts) != 2:
            raise InputError(f"{path}:{n}: expected '<file name> <wnid>', got {line.strip()[:80]!r}.")
        out[stem(parts[0])] = parts[1]
    return out


def read_meta(meta: Path) -> dict[int, str]:
    """ILSVRC2012_ID -> WordNet id of the 1,000 leaf classes in the devkit's meta.mat."""
    import scipy.io

    try:
        synsets = scipy.io.loadmat(str(meta), squeeze_me=True)["synsets"]
        pairs = {int(s["ILSVRC2012_ID"]): str(s["WNID"]) for s in synsets}
    except (OSError, KeyError, ValueError, TypeError, IndexError) as exc:
        raise InputError(f"cannot read the devkit's {meta} ({exc}); it needs a 'synsets' struct.") from None
    return {k: v for k, v in pairs.items() if WNID.match(v)}


def _read_devkit(path: Path, lines: list[str], meta: Path | None) -> dict[str, str]:
    meta = meta or path.with_name("meta.mat")
    if not meta.is_file():
        raise InputError(
            f"{path} holds ILSVRC2012 ids; their WordNet ids are in the devkit's meta.mat, not found at "
            f"{meta}: give data.kwargs.meta_file=PATH."
        )
    ids = read_meta(meta)
    out: dict[str, str] = {}
    for k, line in enumerate(lines, 1):
        ilsvrc = int(line)
        if ilsvrc not in ids:
            raise InputError(f"{path}:{k}: ILSVRC2012 id {ilsvrc} is not a class of {meta}.")
        out[f"ILSVRC2012_val_{k:08d}"] = ids[ilsvrc]
    return out


def read_val_labels(path: Path, meta: Path | None = None) -> dict[str, str]:
    """{image stem: WordNet id} from any of the three forms (detected from the content)."""
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read the validation labels {path}: {exc}.") from None
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if not lines:
        raise InputError(f"the validation labels file {path} is empty.")
    if path.suffix.lower() == ".csv" or lines[0].startswith("ImageId"):
        labels = _read_csv(path)
    elif all(ln.strip().isdigit() for ln in lines):
        labels = _read_devkit(path, [ln.strip() for ln in lines], meta)
    else:
        labels = _read_pairs(path, lines)
    return labels
