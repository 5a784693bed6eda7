"""Reading a model file with torch, safely, and saying exactly what is wrong with a bad one.

``read_torch_file(path, trust_pickle)``: ``torch.load(weights_only=True)`` (no code from the file runs);
a file that really is a pickle of Python objects (a whole model) is loaded only with ``trust_pickle``.
The header decides the message: an empty file, a zip archive cut short ("truncated"), bytes that are
neither a zip nor a pickle ("not a torch file"; never advice to trust it), a pickle whose class cannot be
imported (the module to put on PYTHONPATH). ``load_torchscript`` does the same for TorchScript archives.
"""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from dimcollapse.errors import InputError

ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")
PICKLE_PROTOCOL = b"\x80"  # pickle protocols 2 and above start with PROTO


def _first(e: BaseException, limit: int = 160) -> str:
    text = (str(e).splitlines() or [type(e).__name__])[0]
    return text[:limit]


def file_kind(path: Path) -> str:
    """'empty', 'zip', 'truncated-zip', 'pickle' or 'unknown' from the first bytes and the zip directory."""
    with path.open("rb") as fh:
        head = fh.read(4)
    if not head:
        return "empty"
    if head.startswith(ZIP_MAGIC[0]) or head.startswith(ZIP_MAGIC[1]):
        return "zip" if zipfile.is_zipfile(path) else "truncated-zip"
    if head.startswith(PICKLE_PROTOCOL):
        return "pickle"
    return "unknown"


def unreadable(path: Path, kind: str, e: BaseException | None = None) -> InputError:
    """The one-line error for a file torch cannot read, by what its header says it is."""
    why = f" ({type(e).__name__}: {_first(e)})" if e is not None else ""
    if kind == "empty":
        return InputError(f"model file '{path}' is empty (0 bytes); save the model again.")
    if kind == "truncated-zip":
        return InputError(
            f"model file '{path}' is truncated (a torch zip archive without its end){why}; the copy or the "
            "save was cut short: copy or save it again."
        )
    if kind in ("zip", "pickle"):
        return InputError(f"model file '{path}' is corrupt{why}; save or copy it again.")
    return InputError(
        f"'{path}' is not a torch file (its first bytes are neither a zip archive nor a pickle){why}; pass a "
        ".ckpt, a state_dict .pt/.pth, a TorchScript file or a save_pretrained folder."
    )


def _pickled_objects(path: Path, e: BaseException) -> InputError:
    text = str(e)
    start = text.find("Unsupported global")
    what = text[start:].split(" was not")[0] if start >= 0 else _first(e)
    return InputError(
        f"'{path}' holds pickled Python objects (e.g. a whole model), which are not loaded by default "
        f"because unpickling runs code from the file ({what}). If you trust the file, pass "
        "--trust-pickle; otherwise save model.state_dict() and pass --arch."
    )


def _trusted_load(path: Path, kind: str) -> Any:
    from dimcollapse.analysis.arch import with_current_folder

    with_current_folder()  # a pickled model's class may live in a module of the current folder
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except ModuleNotFoundError as e:
        raise InputError(
            f"'{path}' is a pickled model whose code is in module '{e.name}', which cannot be imported here; "
            f"add the folder that holds {e.name}.py to PYTHONPATH (or run from it), or save "
            "model.state_dict() and pass --arch."
        ) from None
    except AttributeError as e:
        raise InputError(
            f"'{path}' is a pickled model whose class is gone from its module ({_first(e)}); save "
            "model.state_dict() and pass --arch."
        ) from None
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, zipfile.BadZipFile, TypeError) as e:
        raise unreadable(path, kind, e) from None


def read_torch_file(path: Path, trust_pickle: bool) -> Any:
    """The object stored in ``path`` (see the module docstring); every failure is one InputError."""
    kind = file_kind(path)
    if kind in ("empty", "truncated-zip", "unknown"):
        raise unreadable(path, kind)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        if "Unsupported global" not in str(e):  # garbage after a pickle header, not Python objects
            raise unreadable(path, kind, e) from None
        if not trust_pickle:
            raise _pickled_objects(path, e) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError) as e:
        raise unreadable(path, kind, e) from None
    return _trusted_load(path, kind)


def load_torchscript(path: Path) -> nn.Module:
    """``torch.jit.load`` with a broken archive reported as one InputError."""
    try:
        return torch.jit.load(str(path), map_location="cpu")
    except (RuntimeError, ValueError, OSError, zipfile.BadZipFile) as e:
        raise InputError(
            f"'{path}' looks like TorchScript (a zip with code/) but cannot be loaded "
            f"({type(e).__name__}: {_first(e)}); save it again with torch.jit.save."
        ) from None


__all__ = ["file_kind", "load_torchscript", "read_torch_file", "unreadable"]
