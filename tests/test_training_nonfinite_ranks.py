"""The non-finite loss flag agrees over ranks: when one process's loss turns NaN/Inf, every process reads
the same first bad step and terms, so all stop together instead of one raising while the rest wait at the
next collective (2 gloo processes)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from dimcollapse.training.nonfinite import NonFiniteFlag

NAN = float("nan")
# per rank, per step: the values of (ssl, term) seen at that step
HISTORIES = {
    "one rank bad": [
        [[0.5, 0.1], [0.4, 0.1], [0.3, 0.1], [0.3, 0.1], [NAN, 0.1]],
        [[0.5, 0.1], [0.4, 0.1], [0.3, float("inf")], [NAN, NAN], [NAN, NAN]],
    ],
    "both bad at one step": [
        [[0.5, 0.1], [NAN, 0.1], [NAN, NAN]],
        [[0.5, 0.1], [0.4, NAN], [NAN, NAN]],
    ],
    "none bad": [
        [[0.5, 0.1], [0.4, 0.1]],
        [[0.5, 0.2], [0.4, 0.2]],
    ],
}


def _worker(rank: int, world: int, init: str, case: str, out: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
    flag = NonFiniteFlag(2)
    for step, values in enumerate(HISTORIES[case][rank]):
        flag.update(step, [torch.tensor(v) for v in values])
    Path(f"{out}_{rank}.json").write_text(json.dumps(flag.first_bad()))
    dist.barrier()
    dist.destroy_process_group()


@pytest.mark.ddp
@pytest.mark.parametrize(
    ("case", "want"),
    [("one rank bad", [2, [False, True]]), ("both bad at one step", [1, [True, True]]), ("none bad", None)],
)
def test_every_rank_reads_the_earliest_bad_step_of_any_rank(tmp_path: Path, case: str, want: object) -> None:
    world = 2
    mp.spawn(_worker, args=(world, f"file://{tmp_path}/init", case, str(tmp_path / "out")), nprocs=world)
    got = [json.loads((tmp_path / f"out_{r}.json").read_text()) for r in range(world)]
    assert got == [want, want]


def test_one_process_reads_its_own_first_bad_step() -> None:
    flag = NonFiniteFlag(2)
    for step, values in enumerate(HISTORIES["one rank bad"][1]):
        flag.update(step, [torch.tensor(v) for v in values])
    assert flag.first_bad() == (2, [False, True])
