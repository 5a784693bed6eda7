"""Analyse embeddings from files: loading with checks, every diagnostic, metrics.json and figures."""

from dimcollapse.analysis.analyze import analyze_embeddings, analyze_path, compare_paths, compute_metrics
from dimcollapse.analysis.loading import (
    EMBEDDING_SUFFIXES,
    Embeddings,
    as_embeddings,
    embedding_files,
    load_embeddings,
    load_labels,
    read_array,
)

__all__ = [
    "EMBEDDING_SUFFIXES",
    "Embeddings",
    "analyze_embeddings",
    "analyze_path",
    "as_embeddings",
    "compare_paths",
    "compute_metrics",
    "embedding_files",
    "load_embeddings",
    "load_labels",
    "read_array",
]
