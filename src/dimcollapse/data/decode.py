"""Which JPEG decoder a run uses, and decoding: PIL in the loader's workers, or nvJPEG on the GPU through
``torchvision.io.decode_jpeg(device="cuda")`` when torchvision imports and the run's device is a GPU.

    choice = choose_decoder("auto", torch.device("cuda"))   # Decoder(name="torchvision", reason=...)

The guard never fails: a torchvision that is missing or does not import with this torch (any exception
on import) gives PIL, with the reason recorded. DALI is reported when installed but not used (its
pipeline replaces the whole loader; not built here).
"""

from __future__ import annotations

import importlib
import io
import os
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch import Tensor

from dimcollapse.errors import ConfigError, InputError, one_line

DECODERS = ("auto", "pil", "torchvision")
_READ_ERRORS = (OSError, UnidentifiedImageError, ValueError, SyntaxError)


@dataclass(frozen=True)
class Decoder:
    """The decoder chosen (``pil`` in the workers, ``torchvision`` on the device) and why."""

    name: str
    reason: str


def torchvision_decode_jpeg() -> tuple[Any, str]:
    """(torchvision.io.decode_jpeg or None, why not): the import is attempted, any failure is caught."""
    try:
        module = importlib.import_module("torchvision.io")
    except Exception as exc:
        return None, f"torchvision does not import ({one_line(exc)[:120]})"
    fn = getattr(module, "decode_jpeg", None)
    return (fn, "") if callable(fn) else (None, "torchvision.io has no decode_jpeg")


def choose_decoder(requested: str, device: torch.device | str) -> Decoder:
    """``pil`` unless a GPU decoder is asked for (``auto`` / ``torchvision``) and can run on ``device``."""
    if requested not in DECODERS:
        raise ConfigError(f"data.kwargs.decode must be one of {', '.join(DECODERS)}, got {requested!r}.")
    if requested == "pil":
        return Decoder("pil", "asked for")
    dev = torch.device(device)
    if dev.type != "cuda" or not torch.cuda.is_available():
        return Decoder("pil", f"the run's device is {dev.type}, not a CUDA GPU")
    fn, why = torchvision_decode_jpeg()
    if fn is None:
        return Decoder("pil", why)
    return Decoder("torchvision", "torchvision.io.decode_jpeg on the GPU (nvJPEG)")


def _bytes_or_path(source: Any) -> str | os.PathLike[str] | bytes:
    """A path or bytes as given; any other source (a shard member) read through its ``read_bytes()``."""
    return source if isinstance(source, (str, bytes, os.PathLike)) else source.read_bytes()


def open_image(source: Any, channels: int = 3) -> Image.Image:
    """Decoded RGB (or L) PIL image of a path, bytes or a shard member; a bad or huge file: InputError."""
    source = _bytes_or_path(source)
    what = "image bytes" if isinstance(source, bytes) else f"image {source}"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            handle = Image.open(io.BytesIO(source) if isinstance(source, bytes) else source)
            with handle as img:
                return img.convert("RGB" if channels == 3 else "L")
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise InputError(
            f"{what} is too large to decode safely ({one_line(exc)}); the limit is {Image.MAX_IMAGE_PIXELS} "
            "pixels (PIL.Image.MAX_IMAGE_PIXELS, a guard against decompression bombs). Shrink or remove it."
        ) from None
    except _READ_ERRORS as exc:
        raise InputError(f"cannot read {what}: {exc}. Remove or replace the file.") from None


def image_size(source: Any) -> tuple[int, int]:
    """(width, height) from the file's header, without decoding the pixels."""
    source = _bytes_or_path(source)
    try:
        with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as img:
            return int(img.size[0]), int(img.size[1])
    except _READ_ERRORS as exc:
        where = "image bytes" if isinstance(source, bytes) else f"image {source}"
        raise InputError(f"cannot read {where}: {exc}. Remove or replace the file.") from None


def pil_to_tensor(img: Image.Image) -> Tensor:
    """uint8 [C, H, W] of a decoded PIL image."""
    arr = np.asarray(img, dtype=np.uint8)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).contiguous()


def decode_batch(
    data: list[bytes], decoder: Decoder, device: torch.device, channels: int = 3
) -> list[Tensor]:
    """Decoded uint8 [C, H_i, W_i] images on ``device``: one nvJPEG call for the batch, or PIL one by one."""
    if decoder.name == "torchvision":
        fn, why = torchvision_decode_jpeg()
        if fn is None:
            raise InputError(f"the GPU decoder was chosen but {why}; set data.kwargs.decode=pil.")
        encoded = [torch.frombuffer(bytearray(d), dtype=torch.uint8) for d in data]
        mode = importlib.import_module("torchvision.io").ImageReadMode
        read = mode.RGB if channels == 3 else mode.GRAY
        return list(fn(encoded, mode=read, device=device))
    return [pil_to_tensor(open_image(d, channels)).to(device) for d in data]
