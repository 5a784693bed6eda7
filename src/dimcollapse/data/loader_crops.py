"""Training samples cut in the loader from the full image: one crop per view, each seeded by its sample.

The batch sampler yields ``(position, seed)`` pairs (``training/datamodule.py``); the seed is a pure function
of (run seed, micro-batch, rank, slot), so crops do not depend on the number of workers and a resumed run
cuts the same crops. Two ways:

- ``CropSamples`` (CPU decode): a worker decodes the file with PIL and cuts every crop;
  a batch is ``([uint8 [B, C, s_v, s_v] per view], labels)``.
- ``EncodedSamples`` (GPU decode): a worker only reads the file's bytes and its size from the header and
  draws the boxes; ``decode_crops`` then decodes the batch on the device (``data/decode.py``) and cuts
  the same boxes there, giving the same batch form.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import Dataset

from dimcollapse.data.crops import Box, CropSpec, crop_boxes, crop_pil, crop_tensor, sample_generator
from dimcollapse.data.decode import Decoder, decode_batch, image_size, open_image


class CropSamples(Dataset[tuple[list[Tensor], int]]):
    """Items ``(position, seed)`` -> (one uint8 [C, s, s] crop per spec of the full image, label)."""

    def __init__(
        self,
        samples: Sequence[tuple[Any, int]],
        rows: Sequence[int],
        specs: Sequence[CropSpec],
        resize: int,
        channels: int = 3,
    ) -> None:
        self.samples, self.rows, self.specs = samples, list(rows), list(specs)
        self.resize, self.channels = int(resize), int(channels)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, item: tuple[int, int]) -> tuple[list[Tensor], int]:
        pos, seed = item
        path, label = self.samples[self.rows[pos]]
        img = open_image(path, self.channels)
        boxes = crop_boxes(img.size[0], img.size[1], self.specs, self.resize, sample_generator(seed))
        return [
            crop_pil(img, b, s.size, s.interpolation) for b, s in zip(boxes, self.specs, strict=True)
        ], label


class EncodedBatch:
    """A batch of undecoded files (bytes) and each file's crop boxes; a plain object, so Lightning leaves it
    on the CPU (nvJPEG reads its input from host memory)."""

    def __init__(self, data: list[bytes], boxes: list[list[Box]]) -> None:
        self.data, self.boxes = data, boxes

    def __len__(self) -> int:
        return len(self.data)


class EncodedSamples(Dataset[tuple[bytes, list[Box], int]]):
    """Items ``(position, seed)`` -> (the file's bytes, a box per spec drawn from its header size, label)."""

    def __init__(
        self, samples: Sequence[tuple[Any, int]], rows: Sequence[int], specs: Sequence[CropSpec], resize: int
    ) -> None:
        self.samples, self.rows, self.specs, self.resize = samples, list(rows), list(specs), int(resize)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, item: tuple[int, int]) -> tuple[bytes, list[Box], int]:
        pos, seed = item
        path, label = self.samples[self.rows[pos]]
        data = path.read_bytes()  # a Path or a shard Member
        width, height = image_size(data)
        return data, crop_boxes(width, height, self.specs, self.resize, sample_generator(seed)), label


def collate_encoded(items: list[tuple[bytes, list[Box], int]]) -> tuple[EncodedBatch, Tensor]:
    """(EncodedBatch, labels int64 [B]) of a list of EncodedSamples items."""
    batch = EncodedBatch([it[0] for it in items], [it[1] for it in items])
    return batch, torch.tensor([int(it[2]) for it in items], dtype=torch.int64)


def decode_crops(
    batch: EncodedBatch, specs: Sequence[CropSpec], decoder: Decoder, device: torch.device, channels: int = 3
) -> list[Tensor]:
    """One uint8 [B, C, s, s] per spec on ``device``: decode the batch there and cut each sample's boxes."""
    images = decode_batch(batch.data, decoder, device, channels)
    return [
        torch.stack(
            [
                crop_tensor(img, boxes[v], spec.size, spec.interpolation)
                for img, boxes in zip(images, batch.boxes, strict=True)
            ]
        )
        for v, spec in enumerate(specs)
    ]
