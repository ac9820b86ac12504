"""Small builders shared by the tests."""

from __future__ import annotations

from pathlib import Path

import torch

from dcrobench.imageset import ImageSet

TINY_PROTOCOL = str(Path(__file__).parent / "data" / "tiny.yaml")


def blobs(per_class: int = 12, classes: int = 3, size: int = 4, seed: int = 0) -> ImageSet:
    """Separable classes: each class is a bright square in a different place plus noise."""
    g = torch.Generator().manual_seed(seed)
    images, labels = [], []
    for c in range(classes):
        base = torch.zeros(1, size, size)
        base.view(-1)[c % (size * size)] = 1.0
        imgs = (0.2 * torch.rand(per_class, 1, size, size, generator=g) + 0.7 * base).clamp(0, 1)
        images.append(imgs)
        labels.append(torch.full((per_class,), c))
    return ImageSet(torch.cat(images), torch.cat(labels), classes, "blobs")
