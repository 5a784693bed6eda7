"""The result files' schema: its version, and the one converter from every older layout to the current.

metrics.json of a run (``train``, ``eval``) and of an analysed embedding (``analyze``) are flat JSON
objects. Since version 2 they carry ``"record": "run" | "embedding"`` and ``"schema_version"``; files
written before (version 1) carry neither and are recognised by their keys: a run's metrics are suffixed by
the output (``erank_r``, ``n_r``, ...), an embedding's are not (``erank``, ``n``). Every reader goes
through :func:`upgrade`, so a reader sees one layout, and a file of a newer (or unknown) version is one
clear error instead of a wrong table.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Literal, TypeAlias

from dimcollapse.errors import InputError

JsonValue: TypeAlias = "bool | int | float | str | list[JsonValue] | dict[str, JsonValue] | None"
JsonObject: TypeAlias = "dict[str, JsonValue]"
SCHEMA_VERSION = 2  # 1: the schema-less files written before records existed
RECORD_KEY = "record"
VERSION_KEY = "schema_version"
RecordKind = Literal["run", "embedding"]
RUN: Literal["run"] = "run"
EMBEDDING: Literal["embedding"] = "embedding"
OUTPUTS = ("r", "z")  # a training run's outputs: the representation r and the projector output z


def _guess_kind(raw: Mapping[str, object]) -> RecordKind | None:
    """The kind of a version-1 file from its keys (a run's metrics end in ``_r``, an embedding's do not)."""
    if "erank_r" in raw or "n_r" in raw:
        return RUN
    if "erank" in raw or "n" in raw:
        return EMBEDDING
    return None


def upgrade(raw: object, source: str = "metrics") -> tuple[RecordKind, JsonObject]:
    """(kind, fields in the current layout) of a metrics.json's content of any version this code reads.

    Raises InputError naming ``source`` for a non-object, an unknown version or an unknown kind."""
    if not isinstance(raw, Mapping):
        raise InputError(f"{source}: not a JSON object of metrics; re-create it with train, eval or analyze.")
    version = raw.get(VERSION_KEY, 1)
    if isinstance(version, bool) or not isinstance(version, int) or not 1 <= version <= SCHEMA_VERSION:
        raise InputError(
            f"{source}: result schema version {version!r} is not one this dimcollapse reads "
            f"(1 to {SCHEMA_VERSION}); read it with the dimcollapse that wrote it, or re-create it."
        )
    found = raw.get(RECORD_KEY) if version >= 2 else _guess_kind(raw)
    kind: RecordKind | None = RUN if found == RUN else EMBEDDING if found == EMBEDDING else None
    if kind is None:
        raise InputError(
            f"{source}: neither a run's metrics (erank_r, n_r, ...) nor an embedding's (erank, n, ...); "
            "pass a folder written by train, eval or analyze."
        )
    fields: JsonObject = {str(k): v for k, v in raw.items() if k not in (RECORD_KEY, VERSION_KEY)}
    return kind, fields


def stamp(kind: RecordKind, fields: Mapping[str, JsonValue]) -> JsonObject:
    """``fields`` with the record kind and the current schema version in front."""
    return {RECORD_KEY: kind, VERSION_KEY: SCHEMA_VERSION, **fields}


def read_raw(path: Path) -> object:
    """The parsed JSON content of ``path``; InputError naming the file when it is missing or not JSON."""
    try:
        return json.loads(path.read_text())
    except OSError as e:
        raise InputError(f"{path}: cannot be read ({e.strerror or e}); check the path.") from None
    except ValueError:
        raise InputError(f"{path}: not valid JSON (truncated or corrupt); re-create it.") from None
