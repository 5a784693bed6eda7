"""Token-level features of transformers in `analyze --model`: every token a row (`--pool tokens`), the patch
tokens without CLS / register tokens (`--pool patches`), each block's residual stream (`--layers blocks`)
measured at the token level, for Hugging Face (ViTModel, Dinov2WithRegistersModel) and timm-style ViTs
(`--embed forward_features`); and an image folder decoded by DataLoader workers giving the same rows."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dimcollapse.analysis.blocks import block_names
from dimcollapse.analysis.inputs import load_inputs
from dimcollapse.analysis.model import analyze_model
from test_analysis_pretrained import IMAGENET, STANDINS, _cli, _metrics, _normalised, _standin, np_erank

TINY = dict(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2, num_attention_heads=2)


@pytest.fixture()
def images(tmp_path: Path) -> torch.Tensor:
    x = torch.randint(0, 256, (12, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    torch.save(x, tmp_path / "img.pt")
    return x


def _tokens(t: torch.Tensor) -> np.ndarray:
    return t.reshape(-1, t.shape[-1]).double().numpy()


def _run(tmp: Path, model: str, out: str, **kw: object) -> dict:
    return analyze_model(model, str(tmp / "img.pt"), tmp / out, figures=False, k=5, progress=False, **kw)


def test_hf_vit_every_token_a_row_and_each_block_at_the_token_level(
    tmp_path: Path, images: torch.Tensor
) -> None:
    import transformers

    torch.manual_seed(0)
    model = transformers.ViTModel(transformers.ViTConfig(intermediate_size=64, **TINY)).eval()
    model.save_pretrained(tmp_path / "vit")
    m = _run(tmp_path, str(tmp_path / "vit"), "tok", pool="tokens", layers=["blocks"])
    with torch.no_grad():
        out = model(
            pixel_values=_normalised(images, np.full(3, 0.5), np.full(3, 0.5)), output_hidden_states=True
        )
    # 12 images x 17 tokens (16 patches + CLS) as 204 rows of 32 dims
    assert (m["n"], m["d"], m["inputs"], m["rows_per_input"]) == (12 * 17, 32, 12, 17)
    assert m["erank"] == pytest.approx(np_erank(_tokens(out.last_hidden_state)), rel=1e-4)
    # --layers blocks: each encoder block's output (the residual stream hidden_states[i + 1]), every token
    blocks = block_names(model)  # the encoder's ModuleList, as named_modules names it
    assert len(blocks) == 2 and list(m["features"]) == blocks and m["layers"] == {}
    for i, name in enumerate(blocks):
        want = np_erank(_tokens(out.hidden_states[i + 1]))
        assert m["features"][name]["erank"] == pytest.approx(want, rel=1e-4)
        assert m["outputs"][f"hidden_states.{i + 1}"]["erank"] == pytest.approx(want, rel=1e-4)
        assert m["outputs"][f"hidden_states.{i + 1}"]["pool"] == "tokens"
    # without a token pool the blocks are measured per image (the token mean), as before
    mean = _run(tmp_path, str(tmp_path / "vit"), "mean", layers=["blocks"])
    assert mean["n"] == 12 and mean["features"][blocks[0]]["erank"] == pytest.approx(
        np_erank(out.hidden_states[1].mean(1).double().numpy()), rel=1e-4
    )


def test_dinov2_with_registers_patches_leave_out_cls_and_registers(
    tmp_path: Path, images: torch.Tensor
) -> None:
    import transformers

    torch.manual_seed(0)
    config = transformers.Dinov2WithRegistersConfig(mlp_ratio=2, num_register_tokens=2, **TINY)
    model = transformers.Dinov2WithRegistersModel(config).eval()
    model.save_pretrained(tmp_path / "dino")
    m = _run(tmp_path, str(tmp_path / "dino"), "patches", pool="patches")
    with torch.no_grad():
        state = model(pixel_values=_normalised(images, np.full(3, 0.5), np.full(3, 0.5))).last_hidden_state
    assert state.shape[1] == 1 + 2 + 16 and (m["n"], m["rows_per_input"]) == (12 * 16, 16)
    assert m["erank"] == pytest.approx(np_erank(_tokens(state[:, 3:])), rel=1e-4)
    # 16 patch rows per image for 32 dims: the N <= D warning counts token rows
    few = _run(tmp_path, str(tmp_path / "dino"), "few", pool="patches", limit=2)
    assert few["n"] == 32 and any("only 32 token rows for 32 dimensions" in w for w in few["warnings"])


def test_timm_vit_forward_features_patches_and_blocks(tmp_path: Path, images: torch.Tensor) -> None:
    timm = _standin("standin_timm", STANDINS / "timm" / "__init__.py")
    kw = {"img_size": 32, "patch_size": 8, "embed_dim": 32, "depth": 2, "num_heads": 2}
    torch.manual_seed(0)
    vit = timm.VisionTransformer(num_classes=10, **kw).eval()
    torch.save(vit.state_dict(), tmp_path / "vit.pth")
    arch_kw = "{img_size: 32, patch_size: 8, embed_dim: 32, depth: 2, num_heads: 2, num_classes: 10}"
    argv = ["--model", "vit.pth", "--arch", "timm:vit_tiny_patch16_224", "--arch-kwargs", arch_kw]
    argv += ["--data", "img.pt", "--embed", "forward_features", "--pool", "patches", "--layers", "blocks"]
    proc = _cli(tmp_path, *argv)
    assert proc.returncode == 0, proc.stderr
    m = _metrics(tmp_path)
    seen: dict[str, torch.Tensor] = {}
    hooks = [b.register_forward_hook(lambda _m, _i, o, i=i: seen.__setitem__(f"blocks.{i}", o))
             for i, b in enumerate(vit.blocks)]  # fmt: skip
    with torch.no_grad():
        feats = vit.forward_features(_normalised(images, *IMAGENET))
    for h in hooks:
        h.remove()
    assert (m["embedding"], m["embedding_pool"], m["n"]) == ("output", "patches", 12 * 16)
    assert m["erank"] == pytest.approx(np_erank(_tokens(feats[:, 1:])), rel=1e-4)
    assert list(m["features"]) == ["blocks.0", "blocks.1"]
    for name, t in seen.items():
        assert m["features"][name]["erank"] == pytest.approx(np_erank(_tokens(t[:, 1:])), rel=1e-4)


def _folder(root: Path, n: int) -> None:
    rng = np.random.default_rng(0)
    for i in range(n):
        cls = root / f"c{i % 3}"
        cls.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(cls / f"{i:03d}.png")


def test_folder_decoded_by_worker_processes_gives_the_same_rows(tmp_path: Path) -> None:
    _folder(tmp_path / "imgs", 22)
    inputs = load_inputs(str(tmp_path / "imgs"), decode_size=16)
    alone = torch.cat(list(inputs.batches(5, 0)))
    assert alone.shape == (22, 3, 16, 16) and alone.dtype == torch.uint8
    for context in (None, "spawn"):  # the platform's default (fork here) and spawn (macOS, Windows)
        assert torch.equal(torch.cat(list(inputs.batches(5, 2, context=context))), alone), context
    torch.manual_seed(0)
    layers = [torch.nn.Conv2d(3, 8, 3, stride=2), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1)]
    net = torch.jit.script(torch.nn.Sequential(*layers, torch.nn.Flatten()))
    net.save(str(tmp_path / "net.pt"))
    runs = [
        analyze_model(str(tmp_path / "net.pt"), str(tmp_path / "imgs"), tmp_path / f"w{w}", figures=False,
                      k=5, progress=False, image_size=16, batch_size=4, num_workers=w)
        for w in (0, 2)
    ]  # fmt: skip
    assert runs[0]["n"] == runs[1]["n"] == 22
    np.testing.assert_array_equal(runs[0]["spectrum"], runs[1]["spectrum"])
