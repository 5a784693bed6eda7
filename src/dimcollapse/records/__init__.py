"""Result records: one typed, versioned record per run (``RunRecord``) and per embedding
(``EmbeddingRecord``).

    from dimcollapse.records import read_record
    rec = read_record("runs/demo/metrics.json")      # any schema version; InputError for an unknown one
    rec.output("r").get("erank"), rec.output("r").n, rec.accuracies, rec.training.steps

Every reader of results (report, comparison, claims, study table) reads them; the accuracy catalogue
(``accuracy.py``) says which keys are accuracies and how they are labelled.
"""

from dimcollapse.records.accuracy import (
    AccuracyKind,
    accuracy_columns,
    accuracy_key,
    headline_knn,
    is_accuracy,
    knn_stem,
    register_kind,
)
from dimcollapse.records.embedding import EmbeddingRecord
from dimcollapse.records.files import Record, read_record, record_from_json, write_record
from dimcollapse.records.run import RunRecord, TrainingFacts
from dimcollapse.records.schema import SCHEMA_VERSION, upgrade

__all__ = [
    "SCHEMA_VERSION",
    "AccuracyKind",
    "EmbeddingRecord",
    "Record",
    "RunRecord",
    "TrainingFacts",
    "accuracy_columns",
    "accuracy_key",
    "headline_knn",
    "is_accuracy",
    "knn_stem",
    "read_record",
    "record_from_json",
    "register_kind",
    "upgrade",
    "write_record",
]
