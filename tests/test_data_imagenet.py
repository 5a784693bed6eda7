"""ImageNet-1k as distributed: train class folders, flat val + each labels form, evaluation crop 256 / 224,
and random-resized crops from the full image that reach every corner (the old fit-then-crop path cannot)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dimcollapse.data.crops import CropSpec, centre_box, crop_boxes, crop_pil, crop_tensor, sample_generator
from dimcollapse.data.decode import pil_to_tensor
from dimcollapse.data.image_folder import load_image
from dimcollapse.data.loader_crops import CropSamples
from dimcollapse.errors import InputError
from dimcollapse.registry import build
from imagenet_helpers import WNIDS, write_imagenet


@pytest.fixture(autouse=True)
def _no_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DIMCOLLAPSE_DATA", raising=False)


@pytest.mark.parametrize("form", ["csv", "pairs", "devkit"])
def test_flat_val_labels_map_to_train_sorted_wnids(tmp_path: Path, form: str) -> None:
    truth = write_imagenet(tmp_path, labels=form)
    train = build("dataset", "imagenet", root=tmp_path, train=True, image_size=16, resize=18)
    assert train.classes == list(WNIDS) and train.num_classes == 3 and len(train) == 9
    assert [int(v) for v in train.labels] == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert all(p.parent.name == WNIDS[y] for p, y in train.samples)
    val = build("dataset", "imagenet", root=tmp_path, train=False, image_size=16, resize=18)
    assert {p.name: y for p, y in val.samples} == truth
    img, label = val[0]
    assert (
        img.dtype == torch.uint8
        and tuple(img.shape) == (3, 16, 16)
        and label == truth[val.samples[0][0].name]
    )


def test_val_in_class_folders_and_bad_labels(tmp_path: Path) -> None:
    write_imagenet(tmp_path, labels="none")
    with pytest.raises(InputError, match="labels_file"):
        build("dataset", "imagenet", root=tmp_path, train=False)
    bad = tmp_path / "lab.txt"
    bad.write_text("ILSVRC2012_val_00000001.JPEG n01440764\n")
    with pytest.raises(InputError, match="no label for ILSVRC2012_val_00000002"):
        build("dataset", "imagenet", root=tmp_path, train=False, labels_file=bad)
    bad.write_text("".join(f"ILSVRC2012_val_{k:08d}.JPEG n09999999\n" for k in range(1, 7)))
    with pytest.raises(InputError, match="not a class folder"):
        build("dataset", "imagenet", root=tmp_path, train=False, labels_file=bad)
    sorted_val = tmp_path / "sorted"
    write_imagenet(sorted_val, labels="none")
    for f in sorted((sorted_val / "val").iterdir()):  # a val/ already sorted into class folders
        (sorted_val / "val" / WNIDS[1]).mkdir(exist_ok=True)
        f.rename(sorted_val / "val" / WNIDS[1] / f.name)
    val = build("dataset", "imagenet", root=sorted_val, train=False, image_size=8, resize=8)
    assert len(val) == 6 and set(val.labels.tolist()) == {1}
    with pytest.raises(InputError, match="ImageNet not found"):
        build("dataset", "imagenet", root=tmp_path / "train")


def test_eval_crop_is_resize_256_centre_224(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    arr = rng.integers(0, 256, size=(256, 300, 3), dtype=np.uint8)  # shorter side already 256: no resample
    img = Image.fromarray(arr)
    box = centre_box(300, 256, 256, 224)
    assert box == (38, 16, 262, 240)
    out = crop_pil(img, box, 224)
    assert torch.equal(out, torch.from_numpy(arr[16:240, 38:262]).permute(2, 0, 1))
    # a 2x larger image: one resample of the same region = torchvision's resize(256) then centre_crop(224)
    big = img.resize((600, 512), Image.Resampling.BILINEAR)
    region = centre_box(600, 512, 256, 224)
    assert region == (76, 32, 524, 480)
    two_step = np.asarray(big.resize((300, 256), Image.Resampling.BILINEAR))[16:240, 38:262]
    diff = np.abs(crop_pil(big, region, 224).permute(1, 2, 0).numpy().astype(int) - two_step.astype(int))
    assert np.median(diff) <= 1  # same region and filter; only rounding of the intermediate image differs


def corner_image(width: int, height: int, patch: int = 10) -> Image.Image:
    """Grey image whose four corner patches are pure red, green, blue and white."""
    arr = np.full((height, width, 3), 128, dtype=np.uint8)
    for (ys, xs), rgb in zip(CORNERS.values(), COLOURS.values(), strict=True):
        arr[ys * patch : (ys + 1) * patch or None, xs * patch : (xs + 1) * patch or None] = rgb
    return Image.fromarray(arr)


# (row, column) of each corner as slice multipliers: 0 -> [0, patch), -1 -> [-patch, end)
CORNERS = {"top-left": (0, 0), "top-right": (0, -1), "bottom-left": (-1, 0), "bottom-right": (-1, -1)}
COLOURS = {
    "top-left": (255, 0, 0),
    "top-right": (0, 255, 0),
    "bottom-left": (0, 0, 255),
    "bottom-right": (255, 255, 255),
}


def corners_seen(crops: list[torch.Tensor]) -> set[str]:
    """Corners whose colour fills the matching corner pixel of some crop (within 40 levels per channel)."""
    seen = set()
    for c in crops:
        for name, (ys, xs) in CORNERS.items():
            pixel = c[:, ys, xs].int()
            if (pixel - torch.tensor(COLOURS[name])).abs().max() <= 40:
                seen.add(name)
    return seen


def colours_present(img: torch.Tensor) -> set[str]:
    """Corner colours found anywhere in the image (within 40 levels)."""
    px = img.permute(1, 2, 0).reshape(-1, 3).int()
    return {n for n, rgb in COLOURS.items() if ((px - torch.tensor(rgb)).abs().max(dim=1).values <= 40).any()}


def test_random_resized_crops_reach_every_corner_of_the_full_image(tmp_path: Path) -> None:
    path = tmp_path / "c.png"  # lossless: corner colours survive exactly
    corner_image(100, 75).save(path)  # ImageNet's 4:3 landscape shape
    spec = CropSpec(16, (0.08, 1.0), (3 / 4, 4 / 3))
    ds = CropSamples([(path, 0)], [0], [spec, spec], resize=18)
    crops = [c for seed in range(300) for c in ds[(0, seed)][0]]
    assert all(tuple(c.shape) == (3, 16, 16) for c in crops)
    assert corners_seen(crops) == set(COLOURS)
    # the old path fits the image to a centre square first: the left and right corners are gone for good
    assert colours_present(load_image(path, 16, 3)) == set()
    # the same sample seed gives the same crops (workers and resumes agree)
    assert all(torch.equal(a, b) for a, b in zip(ds[(0, 7)][0], ds[(0, 7)][0], strict=True))


def test_crop_boxes_follow_scale_and_ratio_and_tensor_path_matches_pil() -> None:
    spec = CropSpec(24, (0.08, 1.0), (3 / 4, 4 / 3))
    gen = sample_generator(3)
    boxes = [crop_boxes(500, 375, [spec], 256, gen)[0] for _ in range(400)]
    areas = np.array([(r - x0) * (b - t) / (500 * 375) for x0, t, r, b in boxes])
    ratios = np.array([(r - x0) / (b - t) for x0, t, r, b in boxes])
    assert all(0 <= x0 < r <= 500 and 0 <= t < b <= 375 for x0, t, r, b in boxes)
    assert areas.min() >= 0.07 and areas.max() <= 1.0 and np.median(areas) > 0.4  # U(0.08, 1) area fraction
    assert ratios.min() >= 0.74 and ratios.max() <= 1.35
    img = corner_image(500, 375)
    t = pil_to_tensor(img)
    for box in boxes[:20]:  # the GPU path cuts the same region with the same kind of filter
        a, b = crop_pil(img, box, 24).int(), crop_tensor(t, box, 24).int()
        assert (a - b).abs().float().mean() < 2.0
