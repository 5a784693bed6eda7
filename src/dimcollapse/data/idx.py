"""Reader for the IDX format of (Fashion-)MNIST, raw or gzip-compressed, with every header field checked.

Layout (LeCun et al., MNIST): bytes 0-1 are zero, byte 2 the element type (0x08 = uint8, ...), byte 3 the
number of dimensions n, then n big-endian uint32 sizes, then prod(sizes) elements, big-endian, row-major.
"""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from dimcollapse.errors import InputError
from dimcollapse.utils.atomic import atomic_write_bytes
from dimcollapse.utils.memory import ENV_VAR as MEMORY_ENV
from dimcollapse.utils.memory import allocation_limit

IDX_TYPES: dict[int, str] = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
GZIP_MAGIC = b"\x1f\x8b"
CHUNK = 64 * 2**20  # bytes of decompressed output per step


def read_bytes(path: str | Path, max_bytes: int | None = None, why: str = "") -> bytes:
    """The file's content, gunzipped when it starts with the gzip magic bytes 1f 8b.

    Decompression is streamed and stops at ``max_bytes`` (default: the allocation limit of
    ``dimcollapse.utils.memory``), so a gzip bomb is refused with the size instead of filling memory.
    """
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read {p}: {exc.strerror or exc}.") from None
    if raw[:2] == GZIP_MAGIC:
        limit = allocation_limit() if max_bytes is None else int(max_bytes)
        try:
            return _gunzip(raw, limit, p, why or f"the limit, ${MEMORY_ENV}")
        except (OSError, EOFError, zlib.error) as exc:
            raise InputError(
                f"{p}: corrupt or truncated gzip file ({exc}); download it again or use the raw file."
            ) from None
    return raw


def _gunzip(raw: bytes, limit: int, p: Path, why: str, truncate: bool = False) -> bytes:
    """Every gzip member of ``raw`` decompressed, refusing more than ``limit`` bytes of output."""
    out: list[bytes] = []
    total = 0
    data = raw
    while data:
        d = zlib.decompressobj(wbits=31)
        while True:
            chunk = d.decompress(data, max(1, min(CHUNK, limit + 1 - total)))
            total += len(chunk)
            if total > limit and truncate:
                return b"".join([*out, chunk])[:limit]
            if total > limit:
                raise InputError(
                    f"{p}: the gzip file decompresses to more than {limit} bytes ({why}; the file holds "
                    f"{len(raw)} compressed bytes): a decompression bomb or not a dataset file. Download "
                    "the file again."
                )
            out.append(chunk)
            data = d.unconsumed_tail
            if d.eof or not data:
                break
        if not d.eof:
            raise EOFError("compressed file ended before the end-of-stream marker was reached")
        data = d.unused_data
        if data[:2] != GZIP_MAGIC:
            break  # trailing zero padding or garbage after the last member, as gzip tolerates
    return b"".join(out)


HEAD_BYTES = 4 + 4 * 255  # the longest IDX header
SLACK = 2**20  # trailing bytes tolerated before decompression stops (they are then reported as such)


def _read_head(p: Path) -> bytes:
    """The first HEAD_BYTES decompressed bytes of a gzip file (errors are reported by the full read)."""
    try:
        return _gunzip(p.read_bytes(), HEAD_BYTES, p, "header", truncate=True)
    except (OSError, EOFError, zlib.error):
        return b""


def _is_gzip(p: Path) -> bool:
    try:
        with p.open("rb") as fh:
            return fh.read(2) == GZIP_MAGIC
    except OSError:
        return False


def read_idx(
    path: str | Path, ndim: int | None = None, dims: Sequence[int | None] | None = None
) -> np.ndarray:
    """Parse one IDX file into an array of shape sizes; check magic, element type, ndim, dims and length.

    `dims` gives expected sizes per dimension (None = any).
    """
    p = Path(path)
    head = _read_head(p) if _is_gzip(p) else None
    if head is not None and len(head) >= 4 and len(head) >= 4 + 4 * head[3]:
        sizes = np.frombuffer(head, dtype=">u4", count=head[3], offset=4).astype(np.float64)
        itemsize = np.dtype(IDX_TYPES.get(head[2], ">u1")).itemsize
        announced = int(min(4 + 4 * head[3] + float(np.prod(sizes)) * itemsize, 2**62))
        limit = min(announced + SLACK, allocation_limit())
        data = read_bytes(p, max_bytes=limit, why=f"its header announces {announced} bytes")
    else:
        data = read_bytes(p)
    if len(data) < 4:
        raise InputError(f"{p}: only {len(data)} bytes, too short for an IDX header; the file is truncated.")
    if data[0] != 0 or data[1] != 0 or data[2] not in IDX_TYPES or data[3] == 0:
        raise InputError(
            f"{p}: bad IDX magic number 0x{data[:4].hex()} (expected 0x0000TTNN with type TT in "
            f"{', '.join(f'{t:02x}' for t in IDX_TYPES)}); this is not an IDX file."
        )
    n = data[3]
    if ndim is not None and n != ndim:
        raise InputError(f"{p}: IDX file has {n} dimensions, expected {ndim} (magic 0x{data[:4].hex()}).")
    header = 4 + 4 * n
    if len(data) < header:
        raise InputError(f"{p}: truncated IDX header ({len(data)} bytes, need {header}).")
    shape = tuple(int(v) for v in np.frombuffer(data, dtype=">u4", count=n, offset=4))
    if dims is not None:
        for axis, (got, want) in enumerate(zip(shape, dims, strict=False)):
            if want is not None and got != want:
                raise InputError(f"{p}: dimension {axis} is {got}, expected {want} (shape {shape}).")
    dtype = np.dtype(IDX_TYPES[data[2]])
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    body = len(data) - header
    if body != expected:
        what = "truncated" if body < expected else "has trailing bytes"
        raise InputError(
            f"{p}: file {what}: header says shape {shape} ({expected} data bytes) but the file holds {body}."
        )
    arr = np.frombuffer(data, dtype=dtype, offset=header).reshape(shape)
    return arr.astype(dtype.newbyteorder("="), copy=True)


def write_idx(path: str | Path, array: np.ndarray, compress: bool | None = None) -> None:
    """Write `array` as an IDX file (gzip if the name ends in .gz or `compress` is True); for tests/tools."""
    p = Path(path)
    codes = {np.dtype(v).newbyteorder("="): k for k, v in IDX_TYPES.items()}
    dt = array.dtype.newbyteorder("=")
    if dt not in codes:
        raise InputError(
            f"cannot write dtype {array.dtype} as IDX; use one of uint8, int8, int16, int32, f4, f8."
        )
    header = bytes([0, 0, codes[dt], array.ndim]) + np.asarray(array.shape, dtype=">u4").tobytes()
    payload = header + np.ascontiguousarray(array).astype(np.dtype(IDX_TYPES[codes[dt]])).tobytes()
    if compress if compress is not None else p.name.endswith(".gz"):
        payload = gzip.compress(payload)
    atomic_write_bytes(p, payload)
