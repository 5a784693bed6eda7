"""Every class of bad input of issue 12 ends in exactly one plain line ``error: ...`` on stderr, exit 2,
and nothing written into --out; whatever the terminal width (COLUMNS=40, stderr piped to a file)."""

from __future__ import annotations

import io
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch

from dimcollapse.cli.main import os_error_message, print_error
from dimcollapse.errors import InputError, one_line
from robust_helpers import TINY_YAML, idx_gzip_bomb, png_header_only, start_cli


def _make_inputs(tmp: Path) -> dict[str, list[str]]:
    """Bad inputs, one per class; each is a CLI argv run in ``tmp``."""
    (tmp / "tiny.yaml").write_text(TINY_YAML)
    (tmp / "passwd.yaml").write_text("base: /etc/passwd\n")
    (tmp / "runs5.yaml").write_text("name: s\nbase: tiny.yaml\nruns: 5\n")
    (tmp / "escape.yaml").write_text("name: ../../escape\nbase: tiny.yaml\n")
    garbage = tmp / "garbage_study"
    garbage.mkdir()
    (garbage / "results.json").write_text("{not json [/red] \x1b[31m")
    good = tmp / "model.ckpt"
    torch.save({"state_dict": {"w": torch.zeros(1000)}}, good)
    (tmp / "truncated.ckpt").write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    for split in ("train", "val"):
        images = tmp / "images" / split / "cat"
        images.mkdir(parents=True)
        png_header_only(images / "bomb.png", 14000, 14000)
    fm = tmp / "fmnist"
    fm.mkdir()
    for stem in ("train-images-idx3-ubyte", "t10k-images-idx3-ubyte"):
        idx_gzip_bomb(fm / f"{stem}.gz", 64 * 2**20)
    for stem in ("train-labels-idx1-ubyte", "t10k-labels-idx1-ubyte"):
        (fm / f"{stem}.gz").write_bytes(b"")
    train = ["train", "tiny.yaml", "--out", "out"]
    return {
        "accelerator_gpu_on_cpu_host": [*train, "trainer.accelerator=gpu"],
        "devices_zero": [*train, "trainer.devices=0"],
        "strategy_bogus": [*train, "trainer.strategy=bogus"],
        "max_time_nan": [*train, "optim.max_time_minutes=nan"],
        "temperature_nan": [*train, "eval.temperature=nan"],
        "value_near_1e300": [*train, "optim.warmup_epochs=1e300"],
        "lr_inf": [*train, "optim.lr=inf"],
        "mistyped_data_root": [*train, "data.name=fashion_mnist", "data.kwargs={}", "data.root=/no/such/dir"],
        "lid_k_above_test_split": [*train, "eval.max_test=10", "eval.lid_k=20"],
        "markup_in_path": ["train", "[/red]:x:[bold].yaml", "--out", "out"],
        "recipe_base_etc_passwd": ["train", "passwd.yaml", "--out", "out"],
        "unknown_option": [*train, "--no-such-option"],
        "unknown_key_long": [*train, "x" * 500 + "=1"],
        "study_runs_wrong_type": ["study", "runs5.yaml", "--out", "out"],
        "study_name_escapes": ["study", "escape.yaml"],
        "garbage_results_json": ["report", "garbage_study", "--out", "out"],
        "truncated_checkpoint": ["eval", "truncated.ckpt", "--out", "out"],
        "image_decompression_bomb": [
            *train,
            "data.name=image_folder",
            "data.root=images",
            "data.kwargs={image_size: 8, channels: 1}",
            "data.batch_size=1",
        ],
        "idx_gzip_bomb": [*train, "data.name=fashion_mnist", "data.kwargs={}", "data.root=fmnist"],
    }


def _check(results: list[tuple[str, int, str]], cwd: Path) -> None:
    problems = []
    for name, code, err in results:
        lines = err.splitlines()
        if code != 2 or len(lines) != 1 or not lines[0].startswith("error: ") or "\x1b" in err:
            problems.append(f"{name}: exit {code}, {len(lines)} line(s): {err[:300]!r}")
        if (cwd / "out").exists() or (cwd / name / "out").exists():
            problems.append(f"{name}: wrote into --out")
        if "root:x:0:0" in err or "Traceback" in err:
            problems.append(f"{name}: echoed a file or a traceback")
    assert not problems, "\n".join(problems)


def test_every_bad_input_gives_one_line_exit_2_and_writes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from dimcollapse.cli.main import run

    cases = _make_inputs(tmp_path)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("COLUMNS", "40")
    results = []
    for name, argv in cases.items():
        code = run(argv)
        results.append((name, code, capsys.readouterr().err))
    _check(results, tmp_path)
    assert not (tmp_path.parent / "escape").exists() and not (tmp_path / "escape").exists()
    text = {name: err for name, _, err in results}
    assert "no CUDA GPU" in text["accelerator_gpu_on_cpu_host"]
    assert "trainer.accelerator=cpu" in text["accelerator_gpu_on_cpu_host"]
    assert "trainer.devices" in text["devices_zero"] and "bogus" in text["strategy_bogus"]
    assert "optim.max_time_minutes" in text["max_time_nan"] and "eval.temperature" in text["temperature_nan"]
    assert "data.root '/no/such/dir' does not exist" in text["mistyped_data_root"]
    assert "eval.lid_k=20" in text["lid_k_above_test_split"]
    assert "[/red]:x:[bold].yaml" in text["markup_in_path"]
    assert "pixels" in text["image_decompression_bomb"]
    assert "MAX_IMAGE_PIXELS" in text["image_decompression_bomb"]
    assert "decompresses to more than" in text["idx_gzip_bomb"]
    assert "--data-dir" not in "".join(text.values())


PIPED = ("max_time_nan", "markup_in_path", "recipe_base_etc_passwd", "unknown_option", "unknown_key_long",
         "study_runs_wrong_type", "study_name_escapes", "garbage_results_json")  # fmt: skip


def test_piped_stderr_holds_one_line_at_40_columns(tmp_path: Path) -> None:
    """``python -m dimcollapse ... 2>err.txt`` with COLUMNS=40: err.txt is exactly one ``error:`` line."""
    cases = _make_inputs(tmp_path)

    def run(name: str) -> tuple[str, int, str]:
        cwd = tmp_path / "cwd" / name
        cwd.mkdir(parents=True)
        for f in tmp_path.iterdir():
            if f.name != "cwd":
                (cwd / f.name).symlink_to(f)
        err = cwd / "err.txt"
        code = start_cli(cases[name], cwd, err).wait(timeout=600)
        return name, code, err.read_bytes().decode("utf-8", "replace")

    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(run, PIPED))
    _check(results, tmp_path / "cwd")


def test_one_line_reduces_worker_tracebacks_ansi_and_newlines() -> None:
    worker = (
        "Caught InputError in DataLoader worker process 0.\nOriginal Traceback (most recent call last):\n"
        '  File "x.py", line 3, in f\n    raise InputError("bad image")\n'
        "dimcollapse.errors.InputError: cannot read image a.png: broken.\n"
    )
    assert one_line(worker) == "cannot read image a.png: broken."
    assert one_line("\x1b[1mbold\x1b[0m\nsecond\tline  ") == "bold second line"
    assert len(one_line("x" * 10_000)) == 2000
    buf = io.StringIO()
    old, sys.stderr = sys.stderr, buf
    try:
        print_error(InputError("a [/red] b :x: " + "word " * 100))
    finally:
        sys.stderr = old
    assert buf.getvalue().count("\n") == 1 and buf.getvalue().startswith("error: a [/red] b :x: word")


def test_os_errors_are_one_line_with_the_file() -> None:
    import errno

    msg = os_error_message(OSError(errno.ENOSPC, "No space left on device", "/data/out/metrics.json"))
    assert "no space left" in msg and "/data/out/metrics.json" in msg
    assert "permission denied" in os_error_message(PermissionError(errno.EACCES, "Permission denied", "/x"))


@pytest.mark.parametrize("argv", [["train"], ["nonexistent-command"], ["train", "a.yaml", "--out"]])
def test_usage_errors_are_one_line(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    from dimcollapse.cli.main import run

    assert run(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ")


def test_simulate_refuses_verdicts_of_a_diverged_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from dimcollapse.cli.main import run

    code = run(["simulate", "depth", "--lr", "50", "--steps", "200", "--out", str(tmp_path / "sim")])
    captured = capsys.readouterr()
    assert code == 2 and captured.err.count("\n") == 1 and "diverged" in captured.err
    assert "holds" not in captured.out  # no verdict table
