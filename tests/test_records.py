"""The result record: one typed, versioned record read by every reader; accuracies as catalogue entries."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dimcollapse.errors import InputError
from dimcollapse.records import (
    SCHEMA_VERSION,
    EmbeddingRecord,
    RunRecord,
    accuracy_columns,
    read_record,
    record_from_json,
)
from dimcollapse.records.accuracy import AccuracyKind, parse

# a run's metrics.json as every version before records wrote it (schema-less, the `_r` / `_z` dialect)
RUN_V1 = {
    "knn_k20_top1": 0.71,
    "knn_k20_top5": 0.95,
    "knn_k200_top1": 0.69,
    "knn_k200_top5": 0.96,
    "linear_top1": 0.74,
    "linear_top5": 0.97,
    "n_r": 512,
    "d_r": 64,
    "lid_k_r": 20.0,
    "erank_r": 23.5,
    "rankme_r": 25.25,
    "n_z": 512,
    "d_z": 32,
    "erank_z": 11.0,
    "eval_dataset": "digits",
    "eval_test_size": 512,
    "steps": 40,
    "epochs": 2.0,
    "planned_steps": 40,
    "planned_epochs": 2.0,
    "stopped_early": False,
    "stop_reason": "completed",
    "train_time_s": 3.5,
    "seed": 0,
    "versions": {"torch": "2"},
    "resumed": False,
}
# `analyze`'s metrics.json of the same era (no suffix)
EMBEDDING_V1 = {"n": 200, "d": 12, "l2_normalize": False, "erank": 9.5, "lid_mle": {"gmean": 4.0},
                "spectrum": [3.0, 1.0, 0.5], "figures": []}  # fmt: skip


def test_a_run_record_reads_the_old_layout_and_writes_it_back_with_a_version() -> None:
    rec = record_from_json(RUN_V1, "old/metrics.json")
    assert isinstance(rec, RunRecord)
    r, z = rec.output("r"), rec.output("z")
    assert r is not None and z is not None
    assert (r.n, r.d, r.get("erank"), r.get("lid_k")) == (512, 64, 23.5, 20.0)
    assert (z.n, z.d, z.get("erank")) == (512, 32, 11.0)
    assert rec.accuracies["knn_k200_top1"] == 0.69 and rec.accuracies["linear_top5"] == 0.97
    assert (rec.training.steps, rec.training.stop_reason, rec.training.seed) == (40, "completed", 0)
    assert rec.details["versions"] == {"torch": "2"} and rec.details["eval_dataset"] == "digits"
    out = rec.to_json()
    assert out == {"record": "run", "schema_version": SCHEMA_VERSION, **RUN_V1}  # every value kept
    again = RunRecord.from_json(json.loads(json.dumps(out)))
    assert again == rec


def test_an_embedding_record_reads_analyze_output() -> None:
    rec = EmbeddingRecord.from_json(EMBEDDING_V1)
    assert (rec.n, rec.d, rec.get("erank"), rec.spectrum) == (200, 12, 9.5, [3.0, 1.0, 0.5])
    assert rec.details["lid_mle"] == {"gmean": 4.0} and rec.details["l2_normalize"] is False
    assert rec.to_json() == {"record": "embedding", "schema_version": SCHEMA_VERSION, **EMBEDDING_V1}
    with pytest.raises(InputError, match="training run's metrics"):
        EmbeddingRecord.from_json(RUN_V1)
    with pytest.raises(InputError, match="embedding's metrics"):
        RunRecord.from_json(EMBEDDING_V1)


def test_counts_that_are_no_numbers_are_not_trusted() -> None:
    rec = EmbeddingRecord.from_json({"n": float("inf"), "d": "12", "erank": 3.0})
    assert rec.n is None and rec.d is None and rec.get("erank") == 3.0


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ({**RUN_V1, "schema_version": 99, "record": "run"}, "schema version 99 is not one"),
        ({**RUN_V1, "schema_version": "2", "record": "run"}, "schema version '2' is not one"),
        ({"schema_version": 2, "record": "table"}, "neither a run's metrics"),
        ({"accuracy": 1.0}, "neither a run's metrics"),
        ([1, 2], "not a JSON object"),
    ],
)
def test_an_unknown_version_or_kind_is_one_clear_error(tmp_path: Path, content: object, message: str) -> None:
    path = tmp_path / "metrics.json"
    path.write_text(json.dumps(content))
    with pytest.raises(InputError, match=message) as e:
        read_record(path)
    assert str(path) in str(e.value)


def test_a_corrupt_file_names_itself(tmp_path: Path) -> None:
    path = tmp_path / "metrics.json"
    path.write_text('{"erank": 1.0, ')
    with pytest.raises(InputError, match="not valid JSON"):
        read_record(path)
    with pytest.raises(InputError, match="cannot be read"):
        read_record(tmp_path / "missing.json")


def test_accuracy_keys_are_catalogue_entries_in_numeric_order() -> None:
    keys = ["linear_top1", "knn_k200_top1", "knn_k50_top1", "knn_k5_top5", "knn_k5_top1", "erank_r",
            "knn_k200_top1_d0", "linear_top1_d0"]  # fmt: skip
    assert accuracy_columns(keys) == [
        ("knn_k5_top1", "kNN k=5"),
        ("knn_k50_top1", "kNN k=50"),
        ("knn_k200_top1", "kNN k=200"),
        ("linear_top1", "linear probe (L-BFGS, fast CPU)"),
    ]
    assert ("knn_k200_top1_d0", "kNN k=200 (r[:d0])") in accuracy_columns(keys, variants=True)
    assert accuracy_columns(keys, tops=(5,)) == [("knn_k5_top5", "kNN k=5 top-5")]
    parsed = parse("knn_k50_top5_d0")
    assert parsed is not None and (parsed.kind.name, parsed.param, parsed.top, parsed.variant) == (
        "knn", "50", 5, "d0"
    )  # fmt: skip
    assert parse("erank_r") is None and parse("top1") is None
    assert parse("online_probe_last_batch_top1") is None  # not a registered kind


@pytest.fixture
def sgd_kind() -> object:
    from dimcollapse.records import accuracy as acc

    kind = acc.register_kind(AccuracyKind("sgd", r"sgd_probe", "SGD probe", ("eval_sgd_epochs",), order=30))
    yield kind
    acc.KINDS.remove(kind)


def test_a_new_k_and_a_new_kind_show_in_the_report_table_and_the_train_summary(sgd_kind: object) -> None:
    from dimcollapse.cli.train import summary_keys
    from dimcollapse.report.build import summary_table
    from dimcollapse.report.claims import comparability

    rows = [{"run_id": f"a{i}", "variant": "a", "status": "done", "knn_k50_top1": v, "sgd_probe_top1": v,
             "eval_sgd_epochs": 10 + i} for i, v in enumerate((0.5, 0.7))]  # fmt: skip
    table = summary_table(rows, [])[0]
    assert table["knn_k50_top1"] == "60.0 ± 14.1%" and table["sgd_probe_top1"] == "60.0 ± 14.1%"
    assert summary_keys(rows[0])[:2] == ["knn_k50_top1", "sgd_probe_top1"]
    why = comparability(rows[:1], rows[1:], "sgd_probe_top1")  # the kind's settings must be equal
    assert why is not None and "eval_sgd_epochs" in why


def test_the_recorded_coefficient_is_the_one_used() -> None:
    from dimcollapse.study.results import describe_config
    from dimcollapse.training.config import load_config
    from dimcollapse.training.run_record import components_used

    def cfg(*kwargs: dict[str, float]) -> dict[str, object]:
        regs = [{"name": "so", "kwargs": kw} for kw in kwargs]
        return {"objective": {"name": "simclr"}, "regularizers": regs}

    default, explicit = describe_config(cfg({})), describe_config(cfg({"weight": 1e-4}))
    assert default["regularizer_weights"] == explicit["regularizer_weights"] == "so=0.0001"
    assert describe_config(cfg({"weight": 1e-3}))["regularizer_weights"] == "so=0.001"
    run_cfg = load_config(Path("configs/fmnist/simclr_mlp.yaml"), ["regularizers=[{name: so}]"])
    used = components_used(run_cfg)
    assert used["regularizers"] == [{"name": "so", "weight": 1e-4}] and used["objective"] == "simclr"


def test_the_report_of_a_run_of_a_newer_schema_is_one_error_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from dimcollapse.cli.main import run

    (tmp_path / "metrics.json").write_text(json.dumps({**RUN_V1, "record": "run", "schema_version": 3}))
    assert run(["report", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and "schema version 3" in err
    assert not (tmp_path / "report").exists()  # nothing written


def test_a_study_reads_its_runs_through_the_record(tmp_path: Path) -> None:
    from dimcollapse.study.results import run_metrics

    path = tmp_path / "metrics.json"
    assert run_metrics(path) is None  # not finished
    path.write_text(json.dumps(RUN_V1))
    assert run_metrics(path) == RUN_V1  # an old run: every value, no stamp
    path.write_text(json.dumps({**RUN_V1, "record": "run", "schema_version": 2}))
    assert run_metrics(path) == RUN_V1
    path.write_text(json.dumps({**RUN_V1, "record": "run", "schema_version": 7}))
    with pytest.raises(InputError, match="schema version 7"):
        run_metrics(path)
