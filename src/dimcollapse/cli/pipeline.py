"""A whole study: baselines, every run, optional toy theory, then the report."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from dimcollapse.launch.base import Executor
from dimcollapse.study.grid import Study, theory_options
from dimcollapse.study.runner import Plan, StudyRun, resolve_configs, run_study


def run_pipeline(
    study: Study,
    out_dir: str | Path,
    overrides: list[str] | None = None,
    *,
    baselines: bool = True,
    report: bool = True,
    fail_fast: bool = False,
    console: Console | None = None,
    executor: Executor | None = None,
    plan: Plan | None = None,
) -> tuple[StudyRun, Path | None]:
    """Run ``study`` into ``out_dir`` (resumable); return the outcome and the report page (if written)."""
    console = console or Console(stderr=True)
    out = Path(out_dir)
    plan = plan if plan is not None else resolve_configs(study, overrides)
    theory = theory_options(study.options.get("theory"))
    if theory is not None:
        from dimcollapse.theory.summary import run_all

        if not (out / "theory" / "results.json").is_file():
            console.rule("[bold]toy theory[/]: dimcollapse simulate all")
            run_all(out / "theory", **theory)
    if baselines and study.options.get("baselines", True) and plan:
        from dimcollapse.study.baselines import compute_baselines

        console.rule("[bold]baselines[/]: raw pixels and random init")
        out.mkdir(parents=True, exist_ok=True)
        compute_baselines(plan[0][1], out)
    result = run_study(
        study,
        out,
        extra_overrides=overrides,
        fail_fast=fail_fast,
        console=console,
        executor=executor,
        plan=plan,
    )
    paper = study.options.get("paper")
    if paper:
        from rich.markup import escape

        from dimcollapse.study.paper import format_paper_rows, paper_rows

        for line in format_paper_rows(paper_rows(result.rows), str(paper["table"])):
            console.print(escape(line), highlight=False)
    page = None
    if report:
        from dimcollapse.report.build import build_report

        console.rule("[bold]report[/]")
        page = build_report(out)
        console.print(f"report: [bold]{page}[/]")
    return result, page
