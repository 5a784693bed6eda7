"""``dimcollapse simulate EXPERIMENT``: DirectCLR's toy linear models (SPEC section 5)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from dimcollapse.errors import ConfigError, InputError, unknown_name

EXPERIMENTS = ("augmentation", "alignment", "depth", "all")
LOSSES = ("distance", "dot")


def _parse_stds(text: str | None) -> tuple[float, ...] | None:
    if text is None:
        return None
    try:
        vals = tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise ConfigError(
            f"--noise-stds must be comma-separated numbers such as 0.01,0.5,1.5; got '{text}'."
        ) from None
    if not vals or any(not v >= 0 for v in vals):
        raise ConfigError(f"--noise-stds must be non-negative numbers, got '{text}'.")
    return vals


def _diverged_steps(node: object) -> list[int]:
    """Every ``diverged_at`` step that is set anywhere in a result dict."""
    if isinstance(node, dict):
        found = [int(node["diverged_at"])] if node.get("diverged_at") is not None else []
        return found + [s for v in node.values() for s in _diverged_steps(v)]
    if isinstance(node, list):
        return [s for v in node for s in _diverged_steps(v)]
    return []


def simulate(
    experiment: str = typer.Argument(..., help="augmentation | alignment | depth | all"),
    steps: int | None = typer.Option(None, help="SGD steps (default: the experiment's, e.g. 5000)."),
    lr: float | None = typer.Option(None, help="learning rate (default: the experiment's)."),
    seed: int = typer.Option(0, help="random seed."),
    out: Path = typer.Option(Path("runs/theory"), help="folder for figures and results.json."),
    loss: str | None = typer.Option(None, help="distance (DC eq. 2) | dot (z1 z2^T / 0.1)."),
    noise_stds: str | None = typer.Option(
        None, help="augmentation: comma-separated noise stds; alignment/depth: one isotropic std."
    ),
) -> None:
    """Run a DirectCLR toy experiment; write PNG figures and results.json (and index.html for 'all')."""
    from dimcollapse.theory import simulate as run

    if experiment not in EXPERIMENTS:
        raise unknown_name("experiment", experiment, list(EXPERIMENTS))
    if loss is not None and loss not in LOSSES:
        raise unknown_name("loss", loss, list(LOSSES))
    if steps is not None and steps < 0:
        raise ConfigError(f"--steps must be >= 0, got {steps}.")
    if lr is not None and not lr > 0:
        raise ConfigError(f"--lr must be > 0, got {lr}.")
    stds = _parse_stds(noise_stds)
    opts: dict[str, object] = {"steps": steps, "lr": lr, "seed": seed, "loss": loss}
    if stds is not None:
        if experiment == "augmentation":
            opts["noise_stds"] = stds
        elif len(stds) == 1 and experiment != "all":
            opts["noise_std"] = stds[0]
        else:
            raise ConfigError(
                "--noise-stds takes a list only for 'augmentation'; give one value for "
                "'alignment' or 'depth', none for 'all'."
            )
    res = run(experiment, out, **opts)
    diverged = _diverged_steps(res)
    if diverged:
        raise InputError(
            f"simulate {experiment}: the toy training diverged (loss NaN/Inf at step "
            f"{', '.join(str(s) for s in diverged)}), so its verdicts would be meaningless and are not "
            f"printed ({out} records diverged_at). Rerun with a smaller --lr."
        )
    table = Table(title=f"simulate {experiment}: {out}")
    for col in ("claim", "measured", "verdict"):
        table.add_column(col)
    for c in res["claims"]:
        table.add_row(c["claim"], c["measured"], "[green]holds[/]" if c["holds"] else "[red]does not hold[/]")
    Console().print(table)
    Console().print(f"wrote {out} in {res['seconds']:.1f} s")


def register(app: typer.Typer) -> None:
    app.command("simulate")(simulate)
