"""Config and objective mistakes end in one line, exit 2, nothing written: text where a number goes, sizes
that cannot be allocated, a full disk inside torch's writer, an empty test split; the NaN stop's advice is
a value the tool accepts."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from dimcollapse.errors import ConfigError, DiskFullError, DivergedError, allocation_failure
from dimcollapse.registry import build
from robust_helpers import TINY, TINY_YAML, env

CASES = {
    "momentum_text": (
        ["objective.name=byol", "objective.kwargs.base_momentum=abc"],
        "base_momentum must be a number",
    ),
    "widths_text": (["model.backbone_kwargs.widths=[abc,8]"], "option widths must be a list of numbers"),
    "widths_word": (["model.backbone_kwargs.widths=abc"], "option widths must be a list of numbers"),
    "weight_text": (["regularizers=[{name: so, kwargs: {weight: abc}}]"], "weight must be a number"),
    "queue_huge": (["objective.name=mocov2plus", "objective.kwargs.queue_size=100000000000"], "GiB"),
    "prototypes_huge": (["objective.name=swav", "objective.kwargs.n_prototypes=10000000000"], "GiB"),
    "test_split_too_small": (["eval.max_test=2", "eval.lid_k=2"], "has 2 image(s) (eval.max_test=2)"),
}


def test_config_mistakes_give_one_line_exit_2_and_write_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from dimcollapse.cli.main import run

    (tmp_path / "tiny.yaml").write_text(TINY_YAML)
    monkeypatch.chdir(tmp_path)
    problems = []
    for name, (overrides, expected) in CASES.items():
        code = run(["train", "tiny.yaml", *overrides, "--out", name])
        err = capsys.readouterr().err
        lines = err.splitlines()
        if code != 2 or len(lines) != 1 or not lines[0].startswith("error: ") or expected not in err:
            problems.append(f"{name}: exit {code}: {err[:400]!r}")
        if "internal error" in err or "below" in err:
            problems.append(f"{name}: {err[:400]!r}")
        if (tmp_path / name).exists():
            problems.append(f"{name}: wrote its --out")
    assert not problems, "\n".join(problems)


def test_text_where_a_number_goes_names_the_option() -> None:
    with pytest.raises(ConfigError, match=r"objective 'byol': option hidden_dim must be a number") as e:
        build("objective", "byol", dim=8, hidden_dim="abc")
    assert "1e5" not in str(e.value)
    with pytest.raises(ConfigError, match=r"queue_size must be a number .*YAML reads 1e5 as text"):
        build("objective", "mocov2plus", dim=8, queue_size="1e5")
    with pytest.raises(ConfigError, match=r"widths must be a list of numbers"):
        build("backbone", "small_resnet", widths=[4, "x"])
    assert build("objective", "byol", dim=8, hidden_dim=16).predictor is not None


def test_allocation_failures_are_recognised_with_their_size() -> None:
    with pytest.raises(RuntimeError) as e:
        torch.empty(2**45, dtype=torch.float32)  # 128 TiB: torch's allocator refuses (a RuntimeError)
    assert allocation_failure(e.value) == "131072.0 GiB"
    assert allocation_failure(MemoryError()) == ""
    assert allocation_failure(RuntimeError("shape mismatch")) is None
    assert allocation_failure(ValueError("can't allocate memory")) is None


_DISK_FULL = """
import resource, signal, sys, torch
from dimcollapse.utils.atomic import atomic_save
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
target = sys.argv[1]
atomic_save(target, lambda fh: torch.save({"w": torch.zeros(10)}, fh))  # the previous version
resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, 100_000))  # writes beyond 100 kB fail (EFBIG)
try:
    atomic_save(target, lambda fh: torch.save({"w": torch.randn(100_000)}, fh))
except Exception as e:
    print(type(e).__name__, e)
"""


def test_disk_full_inside_torch_zip_writer_is_disk_full_error_and_keeps_the_old_file(tmp_path: Path) -> None:
    """A write that fails inside torch.save's zip writer surfaces as a RuntimeError ("unexpected pos");
    atomic_save reports the OSError underneath it: DiskFullError, the temp file removed, the old file kept."""
    target = tmp_path / "last.ckpt"
    out = subprocess.run(
        [sys.executable, "-c", _DISK_FULL, str(target)],
        env=env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.stdout.startswith(DiskFullError.__name__), out.stdout + out.stderr[-2000:]
    assert str(target) in out.stdout and "\n" not in out.stdout.strip()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt"]
    assert torch.load(target, weights_only=True)["w"].shape == (10,)


def test_the_nan_stop_advises_an_lr_that_resume_accepts(tmp_path: Path) -> None:
    from dimcollapse.training.checkpoint import FiniteModelCheckpoint
    from dimcollapse.training.config import load_config
    from dimcollapse.training.run import prepare, train
    from dimcollapse.training.run_results import diverged_error

    cfg = load_config(None, [*TINY, "optim.max_steps=2"])
    train(cfg, tmp_path)
    huge = load_config(None, [*TINY, "optim.lr=1e7"])
    ckpt = FiniteModelCheckpoint(dirpath=str(tmp_path / "checkpoints"))
    advice = str(diverged_error(DivergedError("x", 3, "objective simclr"), huge.optim.lr, ckpt, tmp_path))
    found = re.search(r"--resume --override-lr (\S+)\.$", advice)
    assert found is not None, advice
    lr = float(found.group(1))
    assert 0 < lr < 1e7
    prepare(cfg, tmp_path, resume=True, override_lr=lr)  # accepted: no ConfigError
    with pytest.raises(ConfigError, match="--override-lr must be"):
        prepare(cfg, tmp_path, resume=True, override_lr=1e6)


def test_an_empty_test_split_says_so() -> None:
    from dimcollapse.training.config import load_config
    from dimcollapse.training.preflight import check_eval_sizes

    cfg = load_config(None, TINY)
    with pytest.raises(ConfigError, match=r"test split of 'synthetic' has 0 image\(s\); .* at least 3") as e:
        check_eval_sizes(cfg, 100, 0)
    assert "below" not in str(e.value)
    with pytest.raises(ConfigError, match=r"eval\.lid_k=4 needs more than 4"):
        check_eval_sizes(cfg, 100, 4)
