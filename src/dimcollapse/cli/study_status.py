"""``dimcollapse study status DIR [--retry-failed]``: the runs' states, job ids, steps and ETAs."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.table import Table


def _eta(seconds: float | None) -> str:
    if seconds is None:
        return ""
    m, s = divmod(round(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s" if m else f"{s}s"


def _flow(value: object) -> str:
    import yaml

    return (
        str(yaml.safe_dump(value, default_flow_style=True, width=10_000)).strip().removesuffix("...").strip()
    )


def status(args: list[str], retry_failed: bool) -> None:
    """Print the status table of the study folder ``args[0]``; with ``retry_failed`` rerun its failed runs."""
    from dimcollapse.errors import ConfigError, InputError
    from dimcollapse.study.ledger import STUDY, read_json_dict
    from dimcollapse.study.status import study_status

    if len(args) != 1:
        raise ConfigError(
            "usage: dimcollapse study status DIR [--retry-failed] (DIR: the study's --out folder)."
        )
    out = Path(args[0])
    if not out.is_dir():
        raise InputError(
            f"study folder '{out}' does not exist; pass the folder given to 'dimcollapse study --out'."
        )
    rows = study_status(out)
    table = Table(title=f"study {out}")
    for col in ("run", "state", "executor", "job id", "steps", "ETA", "requeues", "error"):
        table.add_column(col)
    for r in rows:
        steps = f"{r.step}/{r.max_steps}" if r.step is not None and r.max_steps else ""
        table.add_row(
            r.run_id, r.state, r.executor, r.job_id, steps, _eta(r.eta_s), str(r.requeues), r.error[:80]
        )
    Console(width=200).print(table)
    counts = {s: sum(r.state == s for r in rows) for s in ("done", "running", "queued", "requeued", "failed")}
    Console(width=200).print(", ".join(f"{n} {s}" for s, n in counts.items()), markup=False)
    if not retry_failed:
        return
    failed = [r.run_id for r in rows if r.state == "failed"]
    if not failed:
        Console().print("no failed runs to retry", markup=False)
        return
    busy = [r.run_id for r in rows if r.state in ("running", "queued", "requeued")]
    if busy:
        raise InputError(
            f"cannot retry while {len(busy)} run(s) are still queued or running ({', '.join(busy[:5])}); "
            "wait for them to end (dimcollapse study status), then retry."
        )
    record = read_json_dict(out / STUDY)
    if not record.get("study_file") or not Path(record["study_file"]).is_file():
        raise InputError(
            f"cannot retry: the study file recorded in {out / STUDY} is gone; rerun 'dimcollapse study FILE "
            f"--out {out}' (finished runs are skipped)."
        )
    from dimcollapse.cli.study_launch import launch_study

    executor = record.get("executor") or {}
    items = [
        *record.get("overrides", []),
        *(f"executor.{k}={_flow(v)}" for k, v in executor.items() if k != "name"),
    ]
    Console(stderr=True).print(f"retrying {len(failed)} failed run(s): {', '.join(failed)}", markup=False)
    launch_study(
        Path(record["study_file"]), items, out, executor.get("name"), None, False, False, False, False,
        scale=record.get("scale"),
    )  # fmt: skip
