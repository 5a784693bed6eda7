"""CONTRIBUTING.md and the README's component lists against the code: every file they name exists, every
registry name they cite is registered, every registered name is listed, and the worked examples run."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import torch

from dimcollapse import registry
from dimcollapse.registry import names

ROOT = Path(__file__).resolve().parents[1]
GUIDE = (ROOT / "CONTRIBUTING.md").read_text()
README = (ROOT / "README.md").read_text()
KINDS = {"objectives": "objective", "projectors": "projector", "regularizers": "regularizer",
         "backbones": "backbone", "datasets": "dataset", "steps": "step"}  # fmt: skip


def test_every_file_the_guide_names_exists() -> None:
    paths = set(re.findall(r"`((?:src|tests|configs|docs)/[^`<>\s]+?)(?::\w+(?:\.\w+)*)?`", GUIDE))
    assert len(paths) > 30
    missing = sorted(p for p in paths if not (ROOT / p).exists())
    assert missing == []


def test_every_name_the_guide_cites_is_registered() -> None:
    cited = {
        "objective": ["simclr", "vicreg", "byol", "dino", "swav"],
        "regularizer": ["so", "sigreg", "ldreg"],
    }
    for kind, listed in cited.items():
        for name in listed:
            assert f"`{name}`" in GUIDE and name in names(kind), (kind, name)
    for table_row in ("objective (SSL loss)", "regularizer", "metric", "accuracy-type metric", "backbone",
                      "report section", "CLI command", "objective with its own step shape"):  # fmt: skip
        assert f"| {table_row}" in GUIDE


def _readme_list(label: str) -> set[str]:
    block = re.search(rf"^- {label}: (.*?)(?=^- |^\n)", README, re.S | re.M)
    assert block is not None, label
    return set(re.findall(r"`([a-z0-9_]+)`", block.group(1)))


@pytest.mark.parametrize("label", sorted(KINDS))
def test_readme_component_lists_are_the_registry(label: str) -> None:
    assert _readme_list(label) == set(names(KINDS[label]))


def _example(marker: str) -> str:
    """The Python code block of the guide whose first line is ``# <marker>``."""
    blocks = re.findall(r"```python\n(.*?)```", GUIDE, re.S)
    found = [b for b in blocks if b.startswith(f"# {marker}")]
    assert len(found) == 1, marker
    return found[0]


def _run(code: str, kind: str, name: str) -> Any:
    """Execute a worked example (it registers ``name``); the registry is left as it was."""
    names(kind)  # load the package first, so the example's own registration is the only new one
    scope: dict[str, Any] = {}
    try:
        exec(compile("from __future__ import annotations\n" + code, "CONTRIBUTING.md", "exec"), scope)
        return registry.build(kind, name)
    finally:
        registry._REGISTRY[kind].pop(name, None)


def test_worked_examples_build_and_obey_their_contracts() -> None:
    from dimcollapse import contracts

    torch.manual_seed(0)
    z1, z2 = torch.randn(8, 4, requires_grad=True), torch.randn(8, 4)
    loss = _run(_example("src/dimcollapse/objectives/cosine_pull.py"), "objective", "cosine_pull")
    value = loss(z1, z2)
    want = (1 - torch.nn.functional.cosine_similarity(z1, z2, dim=1)).mean()
    torch.testing.assert_close(value, want)
    assert isinstance(loss, contracts.Objective) and not loss.last_stats["cos"].requires_grad

    reg = _run(_example("src/dimcollapse/regularizers/mean_norm.py"), "regularizer", "mean_norm")
    r = [torch.randn(6, 3) + 1.0 for _ in range(2)]
    torch.testing.assert_close(reg(r), torch.stack([x.mean(0).pow(2).sum() for x in r]).mean())
    assert isinstance(reg, contracts.FeatureRegularizer) and reg.default_weight == 0.1

    net = _run(_example("src/dimcollapse/models/tiny_cnn.py"), "backbone", "tiny_cnn")
    out = net(torch.randn(2, 3, 8, 8))
    assert out.shape == (2, net.out_dim) and isinstance(net, contracts.Backbone)
    assert net.last_layer_name == "conv"


def test_worked_step_example_is_the_masked_step() -> None:
    """The guide's step, registered under another name, computes what the real `masked` step does."""
    from types import SimpleNamespace

    from dimcollapse import contracts
    from dimcollapse.training.config import load_config
    from dimcollapse.training.model import SSLModel
    from dimcollapse.training.steps import MaskedStep

    cfg = load_config(None, ["objective.name=msn", "objective.kwargs={n_prototypes: 8}", "model.backbone=mlp",
                             "model.projector_kwargs={hidden_dim: 16, out_dim: 8}"])  # fmt: skip
    torch.manual_seed(0)
    nets = SSLModel.from_config(cfg.model, cfg.objective, in_channels=1, image_size=8)
    batch = contracts.StepBatch([torch.randn(4, 1, 8, 8) for _ in range(2)], 2, torch.zeros(4))
    values = SimpleNamespace(objective={})
    step = _run(_example("a step like src/dimcollapse/training/steps/masked.py"), "step", "masked_example")
    assert isinstance(step, contracts.TrainingStep)
    torch.manual_seed(5)
    got = step(batch, nets, values)
    torch.manual_seed(5)
    want = MaskedStep()(batch, nets, values)
    assert torch.equal(got.ssl, want.ssl)


def test_worked_cli_example_registers_a_command_that_fails_in_one_line() -> None:
    import typer
    from typer.testing import CliRunner

    scope: dict[str, Any] = {}
    exec(compile(_example("src/dimcollapse/cli/hello.py"), "CONTRIBUTING.md", "exec"), scope)
    app = typer.Typer()
    scope["register"](app)
    app.command("noop")(lambda: None)  # two commands: typer keeps the command name
    result = CliRunner().invoke(app, ["hello", "Ada"])
    assert result.exit_code == 0 and "hello Ada" in result.output
