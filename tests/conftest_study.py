"""Session fixtures shared by the study/report tests: the tiny study trained ONCE, and its HTML report.

Load with ``pytest_plugins = ["conftest_study"]`` in a test module (pytest registers the plugin once, so
the session fixtures below run once per test session however many modules use them). Helpers and the
study's description are in study_helpers.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from study_helpers import TinyStudy, run_cli, write_study


@pytest.fixture(scope="session")
def tiny_study(tmp_path_factory: pytest.TempPathFactory) -> TinyStudy:
    """Train the tiny study once via `dimcollapse study ... --no-report` (the report is built separately)."""
    root = tmp_path_factory.mktemp("tiny_study")
    study = write_study(root / "spec")
    out = root / "out"
    status, text = run_cli(["study", str(study), "--out", str(out), "--no-report"])
    assert status == 0, f"the tiny study failed:\n{text}"
    return TinyStudy(study, out, text)


@pytest.fixture(scope="session")
def tiny_report(tiny_study: TinyStudy) -> Path:
    """`dimcollapse report STUDY --map pca` on the tiny study (PCA: no UMAP compile time); the page path."""
    status, text = run_cli(["report", str(tiny_study.folder), "--map", "pca"])
    assert status == 0, f"the report of the tiny study failed:\n{text}"
    page = tiny_study.folder / "report" / "index.html"
    assert page.is_file(), text
    return page
