"""Which engine chooses the k nearest neighbours: our tiled exact search or a faiss index (CPU, or GPU
when faiss has GPU support and the data is on CUDA).

- ``exact``: tiled brute force in torch (``knn.exact_neighbours``), any device, any float dtype.
- ``faiss-flat``: faiss ``IndexFlatL2``, exact (float32).
- ``faiss-ivf``: ``IndexIVFFlat``, approximate: ``nlist`` k-means cells (default ~4 sqrt(N)), ``nprobe``
  cells searched per query.
- ``faiss-hnsw``: ``IndexHNSWFlat``, approximate graph search (``hnsw_m`` links, ``ef_search``).
Approximate backends are measured, not trusted: ``measure_recall`` compares their neighbours with the
exact ones on a sample of queries. faiss is an optional extra: ``pip install 'dimcollapse[faiss]'``
(faiss-cpu; it does not pull torch).
"""

from __future__ import annotations

import importlib
import math
from dataclasses import dataclass, replace
from types import ModuleType
from typing import Any

import numpy as np
import torch

from dimcollapse.errors import ConfigError

NAMES = ("exact", "faiss-flat", "faiss-ivf", "faiss-hnsw")
APPROXIMATE = ("faiss-ivf", "faiss-hnsw")


@dataclass(frozen=True)
class KnnBackend:
    """A k-NN engine and its index options (ignored by engines that do not use them)."""

    name: str = "exact"
    nlist: int | None = None  # IVF cells; None: about 4 sqrt(N), at most N / 39 (faiss's training minimum)
    nprobe: int = 16  # IVF cells searched per query
    hnsw_m: int = 32  # HNSW links per node
    ef_search: int = 128  # HNSW candidate list at search time
    ef_construction: int = 40  # HNSW candidate list while building
    train_size: int = 100_000  # rows used to train the IVF quantizer
    use_gpu: bool = True  # move the index to the GPU when faiss has GPU support and the data is on CUDA

    @property
    def approximate(self) -> bool:
        """True for indexes whose neighbours may differ from the exact ones."""
        return self.name in APPROXIMATE


BackendLike = str | KnnBackend


def resolve_backend(backend: BackendLike, **options: Any) -> KnnBackend:
    """A ``KnnBackend`` from a name ("exact", "faiss-flat", "faiss-ivf", "faiss-hnsw") or an instance."""
    spec = backend if isinstance(backend, KnnBackend) else KnnBackend(name=str(backend))
    if spec.name not in NAMES:
        raise ConfigError(f"unknown k-NN backend '{spec.name}'. Valid backends: {', '.join(NAMES)}.")
    if options:
        try:
            spec = replace(spec, **options)
        except TypeError as e:
            valid = list(KnnBackend.__annotations__)
            raise ConfigError(f"unknown k-NN backend option: {e}. Valid: {valid}.") from None
    if spec.name.startswith("faiss"):
        load_faiss()
    return spec


def load_faiss() -> ModuleType:
    """The faiss module, or ConfigError saying how to install it."""
    try:
        return importlib.import_module("faiss")
    except ImportError:
        raise ConfigError(
            "the faiss k-NN backends need faiss: pip install 'dimcollapse[faiss]' (or faiss-cpu), "
            "or use backend='exact'."
        ) from None


def _build_index(faiss: ModuleType, data: np.ndarray, spec: KnnBackend, on_gpu: bool) -> Any:
    n, d = data.shape
    if spec.name == "faiss-flat":
        index = faiss.IndexFlatL2(d)
    elif spec.name == "faiss-hnsw":
        index = faiss.IndexHNSWFlat(d, spec.hnsw_m)
        index.hnsw.efConstruction = spec.ef_construction
        index.hnsw.efSearch = spec.ef_search
    else:
        nlist = spec.nlist or max(1, min(int(4 * math.sqrt(n)), n // 39))
        index = faiss.IndexIVFFlat(faiss.IndexFlatL2(d), d, nlist)
        index.nprobe = min(spec.nprobe, nlist)
        rng = np.random.default_rng(0)
        train = data if n <= spec.train_size else data[np.sort(rng.choice(n, spec.train_size, replace=False))]
        index.train(train)
    if on_gpu:
        index = faiss.index_cpu_to_gpu(faiss.StandardGpuResources(), 0, index)
    index.add(data)
    return index


def faiss_neighbours(q: torch.Tensor, r: torch.Tensor | None, k: int, spec: KnnBackend) -> torch.Tensor:
    """Indices (n_q, k) of the k nearest rows of r (r=None: of q, each query's own row excluded) by faiss."""
    faiss = load_faiss()
    self_query = r is None
    ref = q if r is None else r
    on_gpu = spec.use_gpu and q.is_cuda and hasattr(faiss, "StandardGpuResources")
    data = np.ascontiguousarray(ref.detach().cpu().numpy(), dtype=np.float32)
    queries = data if self_query else np.ascontiguousarray(q.detach().cpu().numpy(), dtype=np.float32)
    index = _build_index(faiss, data, spec, on_gpu)
    kk = k + 1 if self_query else k
    _, idx = index.search(queries, kk)
    missing = idx < 0  # an approximate index can find fewer than kk rows: complete those queries exactly
    if missing.any():
        rows = np.nonzero(missing.any(1))[0]
        flat = faiss.IndexFlatL2(data.shape[1])
        flat.add(data)
        idx[rows] = flat.search(queries[rows], kk)[1]
    if self_query:
        idx = _drop_self(idx)
    return torch.from_numpy(idx.astype(np.int64)).to(q.device)


def _drop_self(idx: np.ndarray) -> np.ndarray:
    """From k + 1 neighbours per row, drop the row's own index (or, if absent, the last one)."""
    own = idx == np.arange(idx.shape[0])[:, None]
    own[~own.any(1), -1] = True
    own &= np.cumsum(own, 1) == 1  # only the first match per row
    return idx[~own].reshape(idx.shape[0], idx.shape[1] - 1)
