"""Reading and writing result records: the one way from a metrics.json to a typed record and back."""

from __future__ import annotations

from pathlib import Path

from dimcollapse.records.embedding import EmbeddingRecord
from dimcollapse.records.run import RunRecord
from dimcollapse.records.schema import RUN, read_raw, upgrade
from dimcollapse.utils.atomic import atomic_write_json

Record = RunRecord | EmbeddingRecord


def record_from_json(raw: object, source: str = "metrics") -> Record:
    """A RunRecord or EmbeddingRecord of a metrics.json's content, whichever it holds (any version)."""
    kind, fields = upgrade(raw, source)
    return RunRecord.from_fields(fields) if kind == RUN else EmbeddingRecord.from_fields(fields)


def read_record(path: str | Path) -> Record:
    """The record in ``path`` (a metrics.json); InputError naming the file when missing, corrupt, of an
    unknown schema version or of no known kind."""
    p = Path(path)
    return record_from_json(read_raw(p), str(p))


def write_record(path: str | Path, record: Record) -> None:
    """Write ``record.to_json()`` atomically to ``path``."""
    atomic_write_json(Path(path), record.to_json())
