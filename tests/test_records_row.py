"""The study's result row: one typed record read as the flat results.json layout (identity first,
columns in the order they were set), with number reads that never take a bool or a string for a number."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dimcollapse.errors import InputError
from dimcollapse.records.row import ResultRow, finite, number
from dimcollapse.study.results import load_results, write_results


def test_the_flat_view_puts_identity_first_and_keeps_column_order() -> None:
    row = ResultRow("a_s0", "a", "done", {"objective": "simclr", "seed": None, "run_id": "ignored"})
    row.update({"seed": 0, "knn_k20_top1": 0.5})  # an existing column keeps its place
    assert list(row) == ["run_id", "variant", "status", "objective", "seed", "knn_k20_top1"]
    assert row == {"run_id": "a_s0", "variant": "a", "status": "done", "objective": "simclr", "seed": 0,
                   "knn_k20_top1": 0.5}  # fmt: skip
    row.add_missing({"seed": 5, "erank_r": 3.0})
    assert row["seed"] == 0 and row["erank_r"] == 3.0
    row.set("status", "failed: boom")
    assert row.is_failed and not row.is_done and row.to_json()["status"] == "failed: boom"


def test_number_reads_only_ints_and_floats() -> None:
    cols = {"a": 1, "b": 0.25, "c": True, "d": "0.5", "e": None, "f": float("inf")}
    row = ResultRow("r", "r", columns=dict(cols))
    assert [number(row, k) for k in "abcdef"] == [1.0, 0.25, None, None, None, float("inf")]
    assert finite(row, "f") is None and finite(row, "b") == 0.25 and row.number("missing") is None
    assert row.text("e") == "" and row.text("a") == "1"


def test_results_json_round_trips_every_column(tmp_path: Path) -> None:
    rows = [
        ResultRow("a_s0", "a", "done", {"objective": "byol", "seed": 0, "knn_k200_top1": 0.61, "k": [5, 20]}),
        ResultRow("b_s0", "b", "failed: out of memory", {"objective": "simclr", "stop_reason": "failed"}),
    ]
    write_results(tmp_path, rows)
    raw = json.loads((tmp_path / "results.json").read_text())
    assert raw[0] == {
        "run_id": "a_s0",
        "variant": "a",
        "status": "done",
        "objective": "byol",
        "seed": 0,
        "knn_k200_top1": 0.61,
        "k": [5, 20],
    }  # fmt: skip (a grid value as given)
    back = load_results(tmp_path)
    assert [r.to_json() for r in back] == raw and all(isinstance(r, ResultRow) for r in back)
    assert (tmp_path / "results.csv").read_text().splitlines()[0].startswith("run_id,variant,status,")


def test_a_row_without_run_id_is_one_input_error(tmp_path: Path) -> None:
    (tmp_path / "results.json").write_text(json.dumps([{"variant": "a"}]))
    with pytest.raises(InputError, match="run_id"):
        load_results(tmp_path)
