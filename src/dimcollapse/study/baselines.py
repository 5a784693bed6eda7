"""Reference rows for a study's accuracy table: kNN on raw pixels and on a randomly initialised network.

They answer "how much did self-supervision add?" on the same data, split and kNN settings as the runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from dimcollapse import diagnostics as dg
from dimcollapse.records import accuracy_key, knn_stem
from dimcollapse.records.row import BASELINE, ResultRow
from dimcollapse.study.results import read_json
from dimcollapse.training.config import RunConfig
from dimcollapse.utils.atomic import atomic_write_json

if TYPE_CHECKING:
    from dimcollapse.training.evaluate_run import EvalSettings


def _knn_row(
    name: str, s: EvalSettings, xtr: Tensor, ytr: Tensor, xte: Tensor, yte: Tensor, c: int
) -> ResultRow:
    from dimcollapse.training.evaluation import knn_accuracy

    row = ResultRow(name, name, BASELINE, {"objective": name})
    for k in s.knn_k:
        top1, top5 = knn_accuracy(xtr, ytr, xte, yte, k=int(k), temperature=s.temperature, num_classes=c)
        row.update({accuracy_key(knn_stem(k), 1): top1, accuracy_key(knn_stem(k), 5): top5})
    spec = dg.covariance_spectrum(xte)
    row.update({"erank_r": dg.effective_rank(spec), "d_r": int(xte.shape[1])})
    return row


@torch.no_grad()
def read_baselines(path: Path) -> list[ResultRow] | None:
    """The rows of a baselines.json, None when it is missing or unreadable (computed again)."""
    cached = read_json(path)
    if cached is None or not isinstance(cached.get("rows"), list):
        return None
    return [ResultRow.from_json(r, str(path)) for r in cached["rows"]]


def compute_baselines(cfg: RunConfig, out_dir: str | Path | None = None) -> list[ResultRow]:
    """Rows 'raw pixels' and 'random init' (backbone of ``cfg`` at its seed, untrained); cached in
    ``out_dir/baselines.json``."""
    cache = Path(out_dir) / "baselines.json" if out_dir is not None else None
    if cache is not None:
        cached = read_baselines(cache)
        if cached is not None:
            return cached
    from dimcollapse.training.datamodule import DataSettings, SSLDataModule
    from dimcollapse.training.evaluate_run import EvalSettings
    from dimcollapse.training.module import SSLModule
    from dimcollapse.training.parts import build_parts

    torch.manual_seed(cfg.trainer.seed)
    dm = SSLDataModule(DataSettings.from_config(cfg))
    dm.setup("fit")
    (xtr, ytr), (xte, yte) = dm.eval_sets()
    keep = ytr >= 0
    xtr, ytr = xtr[keep], ytr[keep]
    c, settings = dm.info.num_classes, EvalSettings.from_config(cfg)
    pixels_tr, pixels_te = xtr.flatten(1).float() / 255, xte.flatten(1).float() / 255
    rows = [_knn_row("raw pixels", settings, pixels_tr, ytr, pixels_te, yte, c)]
    module = SSLModule.from_parts(build_parts(cfg, dm.info)).eval()

    def encode(x: Tensor) -> Tensor:
        """Representations r of uint8 images, in evaluation batches."""
        bs = cfg.eval.batch_size
        return torch.cat([module.encode_eval(x[i : i + bs])[0].float() for i in range(0, len(x), bs)])

    rtr, rte = encode(xtr), encode(xte)
    rows.append(_knn_row("random init", settings, rtr, ytr, rte, yte, c))
    rows[-1].set("backbone", cfg.model.backbone)
    if cache is not None:
        atomic_write_json(cache, {"rows": [r.to_json() for r in rows]})
    return rows
