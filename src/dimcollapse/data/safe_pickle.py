"""A restricted unpickler for CIFAR's python-format batches.

CIFAR's files (Python 2 cPickle, protocol 2) hold a dict of byte strings, lists of ints / byte strings and
uint8 numpy arrays. Unpickling them references exactly three globals: numpy.core.multiarray._reconstruct,
numpy.ndarray and numpy.dtype (plus _codecs.encode for byte strings when re-pickled by Python 3).
`find_class` returns inert stand-ins for those (never numpy's own constructors), so no code named by the
file runs; any other global (os.system, ...) is refused. After loading, the stand-ins are turned into
numpy arrays by `np.frombuffer` with a whitelisted numeric dtype and a checked byte count.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Any

import numpy as np

from dimcollapse.errors import InputError

NUMERIC_DTYPES = ("u1", "i1", "u2", "i2", "u4", "i4", "u8", "i8", "f4", "f8", "b1")


class _DtypeSpec:
    """What numpy.dtype(name, align, copy) + __setstate__ would describe: a name and a byte order."""

    def __init__(self, name: Any = None, *_: Any) -> None:
        if not isinstance(name, str | bytes):
            raise pickle.UnpicklingError(f"dtype {name!r} is not a plain numeric dtype")
        self.name = name.decode("latin1") if isinstance(name, bytes) else name
        self.order = "="

    def __setstate__(self, state: Any) -> None:
        if isinstance(state, tuple) and len(state) > 1 and isinstance(state[1], str | bytes):
            order = state[1].decode("latin1") if isinstance(state[1], bytes) else state[1]
            self.order = order if order in ("<", ">") else "="

    def to_numpy(self) -> np.dtype:
        if self.name not in NUMERIC_DTYPES:
            raise pickle.UnpicklingError(f"array dtype '{self.name}' (only numeric dtypes allowed)")
        return np.dtype(self.order + self.name)


class _ArraySpec:
    """What numpy's _reconstruct(ndarray, (0,), b'b') + __setstate__ would build, kept as plain data."""

    def __init__(self, *_: Any) -> None:
        self.state: Any = None

    def __setstate__(self, state: Any) -> None:
        self.state = state

    def to_numpy(self) -> np.ndarray:
        st = self.state
        if not isinstance(st, tuple) or len(st) != 5:
            raise pickle.UnpicklingError("malformed numpy array state")
        _, shape, dtype, fortran, raw = st
        if not isinstance(dtype, _DtypeSpec) or not isinstance(raw, bytes):
            raise pickle.UnpicklingError("numpy array without a numeric dtype and raw bytes")
        if not isinstance(shape, tuple) or not all(isinstance(s, int) and s >= 0 for s in shape):
            raise pickle.UnpicklingError(f"bad array shape {shape!r}")
        dt = dtype.to_numpy()
        if int(np.prod(shape, dtype=np.int64)) * dt.itemsize != len(raw):
            raise pickle.UnpicklingError(f"array of shape {shape} does not match its {len(raw)} data bytes")
        return np.frombuffer(raw, dtype=dt).reshape(shape, order="F" if fortran else "C").copy()


def _ndarray_placeholder(*_: Any) -> None:
    """Stands for numpy.ndarray, only ever passed as the first argument of _reconstruct."""


def _latin1_encode(text: Any, encoding: Any = "latin1") -> bytes:
    """The only use of _codecs.encode in a bytes pickle: str -> bytes in latin-1."""
    if encoding not in ("latin1", "latin-1", "iso-8859-1") or not isinstance(text, str):
        raise pickle.UnpicklingError(f"refused _codecs.encode with encoding {encoding!r}")
    return text.encode("latin1")


ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("numpy.core.multiarray", "_reconstruct"): _ArraySpec,
    ("numpy._core.multiarray", "_reconstruct"): _ArraySpec,
    ("numpy", "ndarray"): _ndarray_placeholder,
    ("numpy", "dtype"): _DtypeSpec,
    ("_codecs", "encode"): _latin1_encode,
}


class CifarUnpickler(pickle.Unpickler):
    """Unpickler whose find_class resolves only CIFAR's three numpy globals (to inert stand-ins)."""

    def find_class(self, module: str, name: str) -> Any:
        try:
            return ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(
                f"global '{module}.{name}' is not allowed in a CIFAR batch"
            ) from None


def _materialise(obj: Any, depth: int = 0) -> Any:
    """Replace array stand-ins by numpy arrays; allow only dict/list/tuple/bytes/str/int/float/None."""
    if depth > 4:
        raise pickle.UnpicklingError("nesting deeper than a CIFAR batch")
    if isinstance(obj, _ArraySpec):
        return obj.to_numpy()
    if isinstance(obj, dict):
        return {_materialise(k, depth + 1): _materialise(v, depth + 1) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        if all(isinstance(v, int | bytes | str | float) for v in obj):
            return obj
        return type(obj)(_materialise(v, depth + 1) for v in obj)
    if isinstance(obj, bytes | str | int | float | type(None)):
        return obj
    raise pickle.UnpicklingError(f"unexpected object of type {type(obj).__name__}")


def load_cifar_pickle(path: str | Path) -> dict[str, Any]:
    """Load one CIFAR python-format batch safely: a dict with str keys (decoded from bytes) -> values."""
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read {p}: {exc.strerror or exc}.") from None
    try:
        obj = _materialise(CifarUnpickler(io.BytesIO(raw), encoding="bytes").load())
    except Exception as exc:  # any failure to parse is the file's fault, never ours to execute
        raise InputError(
            f"{p}: not a CIFAR python-format batch ({type(exc).__name__}: {exc}); refusing to load it. "
            "Use the files of the CIFAR archive (cifar-10-python.tar.gz / cifar-100-python.tar.gz) or the "
            "binary version."
        ) from None
    if not isinstance(obj, dict):
        raise InputError(f"{p}: not a CIFAR batch: the pickle holds a {type(obj).__name__}, not a dict.")
    out: dict[str, Any] = {}
    for k, v in obj.items():
        key = k.decode("latin1") if isinstance(k, bytes) else k
        if not isinstance(key, str):
            raise InputError(f"{p}: not a CIFAR batch: key {k!r} is not a string.")
        out[key] = v
    return out
