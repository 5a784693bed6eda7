"""The shared file index: two processes started together list the split once (one builds, one reads);
the index equals a sorted listing, is rewritten when a class folder changes, and the GPU decode guard
chooses PIL cleanly here (torchvision does not import, no GPU)."""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from dimcollapse.data import decode
from dimcollapse.data.file_index import index_path, shared_index
from imagenet_helpers import write_imagenet, write_jpeg

SRC = Path(__file__).resolve().parents[1] / "src"
READER = (
    "import json, sys; from dimcollapse.data.file_index import shared_index; "
    "print(json.dumps(shared_index(sys.argv[1], sys.argv[2])))"
)


def listing(split: Path) -> list[str]:
    return sorted(str(p.relative_to(split)) for p in split.rglob("*.JPEG"))


def test_two_processes_share_one_index(tmp_path: Path) -> None:
    write_imagenet(tmp_path, per_class=4)
    split = tmp_path / "train"
    lock = index_path(split)
    lock.parent.mkdir(parents=True)
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    with open(lock.with_name(lock.name + ".lock"), "a+") as held:
        fcntl.flock(held.fileno(), fcntl.LOCK_EX)  # both processes start while the index is being "built"
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", READER, str(split), "class_folders"],
                stdout=subprocess.PIPE,
                env=env,
                text=True,
            )
            for _ in range(2)
        ]
        time.sleep(1.0)
        assert all(p.poll() is None for p in procs)  # both wait on the lock
        fcntl.flock(held.fileno(), fcntl.LOCK_UN)
    results = [json.loads(p.communicate(timeout=60)[0]) for p in procs]
    assert sorted(built for _, built in results) == [False, True]  # exactly one listed the folder
    assert results[0][0] == results[1][0] == listing(split)
    assert shared_index(split) == (listing(split), False)  # later readers read it


def test_index_is_rebuilt_when_a_class_folder_changes(tmp_path: Path) -> None:
    truth = write_imagenet(tmp_path)
    files, built = shared_index(tmp_path / "val", "flat")
    assert built and files == sorted(truth)
    write_jpeg(tmp_path / "train" / "n01443537" / "extra.JPEG", 20, 20, 9)
    files, built = shared_index(tmp_path / "train")
    assert built and "n01443537/extra.JPEG" in files
    assert shared_index(tmp_path / "train") == (files, False)
    os.remove(tmp_path / "train" / "n01443537" / "extra.JPEG")
    files, built = shared_index(tmp_path / "train")
    assert built and "n01443537/extra.JPEG" not in files


def test_index_lives_beside_the_data_or_in_the_given_dir(tmp_path: Path) -> None:
    write_imagenet(tmp_path / "data")
    assert index_path(tmp_path / "data" / "train") == tmp_path / "data" / ".dimcollapse_index" / "train.json"
    files, built = shared_index(tmp_path / "data" / "train", index_dir=tmp_path / "idx")
    assert built and (tmp_path / "idx" / "train.json").is_file() and len(files) == 9


def test_decode_guard_falls_back_to_pil_without_torchvision_or_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    fn, why = decode.torchvision_decode_jpeg()
    assert fn is None and "torchvision" in why  # torchvision is not importable in this environment
    assert decode.choose_decoder("auto", "cpu").name == "pil"
    assert decode.choose_decoder("torchvision", torch.device("cpu")).name == "pil"
    assert decode.choose_decoder("pil", "cuda").name == "pil"
    # a GPU without a working torchvision: still PIL, and the reason names torchvision
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    choice = decode.choose_decoder("auto", "cuda")
    assert choice.name == "pil" and "torchvision" in choice.reason
    # a GPU and an importable torchvision.io.decode_jpeg: the GPU decoder
    monkeypatch.setattr(decode, "torchvision_decode_jpeg", lambda: (lambda *a, **k: None, ""))
    assert decode.choose_decoder("auto", "cuda").name == "torchvision"
    assert decode.choose_decoder("auto", "cpu").name == "pil"
