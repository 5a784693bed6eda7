"""Load embeddings (N x D) and labels from files, checking everything a user can get wrong.

Formats: ``.npy``, ``.npz``, ``.pt``/``.pth`` (``torch.load(weights_only=True)``), ``.safetensors``,
``.csv`` (numeric, optional header row). A directory stands for every such file inside it.
Every problem raises :class:`dimcollapse.errors.InputError` saying what is wrong and how to fix it.
"""

from __future__ import annotations

import pickle
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dimcollapse.errors import InputError

EMBEDDING_SUFFIXES: tuple[str, ...] = (".npy", ".npz", ".pt", ".pth", ".safetensors", ".csv")
LABEL_SUFFIXES: tuple[str, ...] = (".npy", ".csv", ".txt")


@dataclass(frozen=True)
class Embeddings:
    """A validated N x D float array read from ``path`` (rows with NaN/Inf possibly dropped)."""

    name: str
    path: Path
    values: np.ndarray
    rows_in_file: int
    kept: np.ndarray  # bool mask over the file's rows: True for the rows in ``values``

    @property
    def dropped(self) -> int:
        """Number of rows dropped because they held NaN or Inf."""
        return int(self.rows_in_file - self.values.shape[0])


def embedding_files(path: str | Path) -> list[Path]:
    """The embeddings files ``path`` stands for: itself, or the supported files in a directory."""
    p = Path(path)
    if not p.exists():
        raise InputError(f"'{p}' does not exist. Check the path (embeddings file or folder of them).")
    if p.is_dir():
        files = sorted(
            f
            for f in p.iterdir()
            if f.is_file() and not f.name.startswith(".") and f.suffix.lower() in EMBEDDING_SUFFIXES
        )
        if not files:
            raise InputError(
                f"folder '{p}' holds no embeddings files. Put files ending in "
                f"{', '.join(EMBEDDING_SUFFIXES)} there, or pass a file."
            )
        return files
    _check_suffix(p)
    return [p]


def _check_suffix(p: Path) -> None:
    if p.suffix.lower() not in EMBEDDING_SUFFIXES:
        raise InputError(
            f"'{p}' has an unknown extension '{p.suffix or '(none)'}'. Supported: "
            f"{', '.join(EMBEDDING_SUFFIXES)}. Save the embeddings in one of these formats."
        )


def read_array(path: str | Path, key: str | None = None) -> np.ndarray:
    """Read the raw array stored in ``path`` (no shape/value checks); ``key`` picks one of several."""
    p = Path(path)
    if not p.exists():
        raise InputError(f"'{p}' does not exist. Check the path.")
    if p.is_dir():
        raise InputError(f"'{p}' is a folder, expected a file.")
    _check_suffix(p)
    suffix = p.suffix.lower()
    readers = {
        ".npy": _read_npy,
        ".npz": _read_npz,
        ".pt": _read_torch,
        ".pth": _read_torch,
        ".safetensors": _read_safetensors,
        ".csv": _read_csv,
    }
    if key is not None and suffix in (".npy", ".csv"):
        raise InputError(f"--key '{key}' was given but '{p}' ({suffix}) holds a single array; drop --key.")
    try:
        return readers[suffix](p, key)
    except InputError:
        raise
    except MemoryError:
        raise InputError(f"'{p}' is too large to load into memory.") from None
    except PermissionError:
        raise InputError(f"cannot read '{p}': permission denied.") from None
    except Exception as e:  # every format library has its own corrupt-file exception
        raise InputError(
            f"cannot read '{p}': the file is corrupt, truncated or not a valid {suffix} file "
            f"({type(e).__name__}: {_short(e)}). Re-export it."
        ) from None


def _short(e: BaseException, limit: int = 160) -> str:
    text = " ".join(str(e).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _check_magic(p: Path, magics: tuple[bytes, ...], kind: str) -> None:
    with p.open("rb") as fh:
        head = fh.read(8)
    if not any(head.startswith(m) for m in magics):
        raise InputError(
            f"cannot read '{p}': it is not a {kind} file (wrong header bytes); it is corrupt or "
            "was saved in another format. Re-export it."
        )


def _read_npy(p: Path, key: str | None) -> np.ndarray:
    _check_magic(p, (b"\x93NUMPY",), ".npy")
    try:
        return np.asarray(np.load(p, allow_pickle=False))
    except ValueError as e:
        if "allow_pickle" in str(e):
            raise InputError(
                f"'{p}' holds Python objects (an object array), not numbers; loading it would run "
                "pickled code. Save a numeric array (np.save(path, array.astype(np.float32)))."
            ) from None
        raise


def _pick(p: Path, arrays: Mapping[str, Any], key: str | None) -> Any:
    """Choose one array of a named collection: ``key``, the only one, or the only 2-D one."""
    if not arrays:
        raise InputError(f"'{p}' holds no arrays. Save the embeddings into it.")
    listing = ", ".join(f"{k} {tuple(getattr(v, 'shape', ()))}" for k, v in arrays.items())
    if key is not None:
        if key not in arrays:
            raise InputError(f"'{p}' has no array named '{key}'. It holds: {listing}. Pass one with --key.")
        return arrays[key]
    if len(arrays) == 1:
        return next(iter(arrays.values()))
    two_d = [k for k, v in arrays.items() if len(getattr(v, "shape", ())) == 2]
    if len(two_d) == 1:
        return arrays[two_d[0]]
    raise InputError(f"'{p}' holds several arrays ({listing}); choose one with --key NAME.")


def _read_npz(p: Path, key: str | None) -> np.ndarray:
    _check_magic(p, (b"PK\x03\x04", b"PK\x05\x06"), ".npz (zip)")
    try:
        with np.load(p, allow_pickle=False) as npz:
            names = list(npz.files)
            if key is not None and key in names:
                return np.asarray(npz[key])
            if key is not None:
                listing = ", ".join(names) or "(none)"
                raise InputError(
                    f"'{p}' has no array named '{key}'. It holds: {listing}. Pass one with --key."
                )
            return np.asarray(_pick(p, {n: npz[n] for n in names}, None))
    except ValueError as e:
        if "allow_pickle" in str(e):
            raise InputError(
                f"'{p}' holds Python objects (an object array), not numbers. Save numeric arrays."
            ) from None
        raise
    except zipfile.BadZipFile:
        raise InputError(
            f"cannot read '{p}': not a valid .npz (zip) file; it is corrupt or truncated."
        ) from None


@dataclass(frozen=True)
class _Named:
    name: str
    shape: tuple[int, ...]


def _read_torch(p: Path, key: str | None) -> np.ndarray:
    import torch

    try:
        obj = torch.load(p, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        msg = str(e)
        if "weights_only" in msg or "Unsupported global" in msg or "WeightsUnpickler" in msg:
            raise InputError(
                f"'{p}' contains pickled Python objects, which are not loaded for safety "
                "(torch.load weights_only=True). Save a plain tensor or a dict of tensors: "
                "torch.save(embeddings.detach().cpu(), path)."
            ) from None
        raise
    _refuse_model_file(p, obj)
    if isinstance(obj, torch.Tensor):
        tensor = obj
    elif isinstance(obj, Mapping):
        tensors = {str(k): v for k, v in obj.items() if isinstance(v, torch.Tensor)}
        if key is not None and key in obj and key not in tensors:
            raise InputError(f"'{p}': entry '{key}' is a {type(obj[key]).__name__}, not a tensor.")
        if not tensors:
            raise InputError(f"'{p}' holds a dict with no tensors (keys: {', '.join(map(str, obj))}).")
        tensor = _pick(p, tensors, key)
    else:
        raise InputError(
            f"'{p}' holds a {type(obj).__name__}; expected a tensor or a dict of tensors. "
            "Save with torch.save(embeddings, path)."
        )
    if key is not None and isinstance(obj, torch.Tensor):
        raise InputError(f"--key '{key}' was given but '{p}' holds a single tensor; drop --key.")
    return _tensor_to_numpy(tensor)


def _refuse_model_file(p: Path, obj: Any) -> None:
    """A state_dict or Lightning checkpoint is a model, not embeddings: say how to analyse it."""
    from dimcollapse.analysis.model_loading import looks_like_lightning, looks_like_state_dict

    if looks_like_lightning(obj) or looks_like_state_dict(obj):
        what = "a Lightning checkpoint" if looks_like_lightning(obj) else "a model state_dict"
        raise InputError(
            f"'{p}' is {what} (keys like '{next(iter(obj))}'), not embeddings. Analyse the model instead: "
            f"dimcollapse analyze --model {p} --arch NAME_OR_module:Class --data DATA."
        )


def _tensor_to_numpy(t: Any) -> np.ndarray:
    import torch

    t = t.detach().cpu()
    if t.is_complex():
        raise InputError("complex-valued embeddings are not supported; pass real features.")
    if t.dtype in (torch.bfloat16, torch.float16):
        t = t.float()
    return np.asarray(t.numpy())


def _read_safetensors(p: Path, key: str | None) -> np.ndarray:
    from safetensors import safe_open

    with safe_open(str(p), framework="pt") as fh:
        names = list(fh.keys())
        shapes = {n: _Named(n, tuple(fh.get_slice(n).get_shape())) for n in names}
        chosen = _pick(p, shapes, key)
        return _tensor_to_numpy(fh.get_tensor(chosen.name))


def _read_csv(p: Path, key: str | None) -> np.ndarray:
    text = p.read_text(encoding="utf-8")
    lines = [(i + 1, ln.strip()) for i, ln in enumerate(text.splitlines())]
    lines = [(i, ln) for i, ln in lines if ln and not ln.startswith("#")]
    if lines and not _is_numeric_row(lines[0][1]):
        lines = lines[1:]  # a header row
    rows: list[list[float]] = []
    width = None
    for lineno, ln in lines:
        fields = [f.strip() for f in ln.split(",")]
        try:
            row = [float(f) for f in fields]
        except ValueError:
            raise InputError(
                f"'{p}' line {lineno} is not numeric ('{ln[:60]}'). A CSV of embeddings holds numbers "
                "only, one row per sample, with at most one header row."
            ) from None
        if width is None:
            width = len(row)
        elif len(row) != width:
            raise InputError(
                f"'{p}' line {lineno} has {len(row)} values but earlier rows have {width}. "
                "Every row must have the same number of columns."
            )
        rows.append(row)
    if not rows:
        raise InputError(f"'{p}' holds no data rows.")
    return np.asarray(rows, dtype=np.float64)


def _is_numeric_row(line: str) -> bool:
    try:
        [float(f) for f in line.split(",")]
    except ValueError:
        return False
    return True


def as_embeddings(values: Any, source: str, drop_nonfinite: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Check ``values`` is a 2-D real N x D array with N >= 2 finite rows; return (float array, kept mask)."""
    arr = np.asarray(values)
    if arr.dtype == object or arr.dtype.kind not in "biuf":
        raise InputError(f"{source}: values have type {arr.dtype}; expected real numbers.")
    if arr.ndim != 2:
        hint = (
            "for a single vector, add a row axis; for one number per sample, this is not an embedding"
            if arr.ndim < 2
            else "pool or flatten the extra axes first (e.g. mean over tokens: Z.mean(axis=1))"
        )
        raise InputError(
            f"{source}: array has shape {tuple(arr.shape)} ({arr.ndim}-D); expected a 2-D array N x D "
            f"(one row per sample): {hint}."
        )
    n, d = arr.shape
    if d < 1:
        raise InputError(f"{source}: array has shape {tuple(arr.shape)}: no feature columns.")
    if arr.dtype.kind != "f":
        arr = arr.astype(np.float64)
    finite = np.isfinite(arr).all(axis=1)
    n_bad = int(n - finite.sum())
    if n_bad and not drop_nonfinite:
        first = int(np.flatnonzero(~finite)[0])
        raise InputError(
            f"{source}: {n_bad} of {n} rows contain NaN or Inf (first at row {first}). "
            "Fix the data, or pass --drop-nonfinite to drop those rows."
        )
    if n_bad:
        arr = arr[finite]
    if arr.shape[0] < 2:
        extra = f" after dropping {n_bad} rows with NaN/Inf" if n_bad else ""
        raise InputError(
            f"{source}: {arr.shape[0]} row(s){extra}; at least 2 samples are needed for a covariance."
        )
    return arr, finite


def load_embeddings(path: str | Path, key: str | None = None, drop_nonfinite: bool = False) -> Embeddings:
    """Read and validate one embeddings file; ``key`` names the array in a multi-array file."""
    p = Path(path)
    raw = read_array(p, key)
    values, kept = as_embeddings(raw, f"'{p}'", drop_nonfinite)
    return Embeddings(name=p.stem, path=p, values=values, rows_in_file=int(kept.shape[0]), kept=kept)


def load_labels(path: str | Path, rows: int) -> np.ndarray:
    """Read integer labels (.npy, or .csv/.txt with one label per line) and check there are ``rows``."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"labels file '{p}' does not exist. Check --labels.")
    suffix = p.suffix.lower()
    if suffix not in LABEL_SUFFIXES:
        raise InputError(f"labels file '{p}' must end in {', '.join(LABEL_SUFFIXES)}.")
    try:
        if suffix == ".npy":
            raw = np.load(p, allow_pickle=False)
        else:
            tokens = p.read_text(encoding="utf-8").replace(",", " ").split()
            if tokens and not _is_number(tokens[0]):
                tokens = tokens[1:]  # header
            raw = np.asarray([float(t) for t in tokens], dtype=np.float64)
    except InputError:
        raise
    except Exception as e:
        raise InputError(
            f"cannot read labels file '{p}' ({type(e).__name__}: {_short(e)}). "
            "It must hold one integer label per sample."
        ) from None
    labels = np.asarray(raw)
    if labels.ndim == 2 and 1 in labels.shape:
        labels = labels.reshape(-1)
    if labels.ndim != 1 or labels.dtype.kind not in "biuf":
        raise InputError(f"labels file '{p}' must hold a 1-D list of integers, got shape {labels.shape}.")
    if labels.dtype.kind == "f" and not (np.isfinite(labels).all() and np.all(labels == np.round(labels))):
        raise InputError(f"labels file '{p}' holds non-integer values; labels must be integers.")
    if labels.shape[0] != rows:
        raise InputError(
            f"labels file '{p}' has {labels.shape[0]} labels but the embeddings have {rows} rows; "
            "they must match one to one."
        )
    return labels.astype(np.int64)


def _is_number(token: str) -> bool:
    try:
        float(token)
    except ValueError:
        return False
    return True
