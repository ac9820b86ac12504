"""Small builders shared by the tests."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import torch

from dcrobench.imageset import ImageSet

TINY_PROTOCOL = str(Path(__file__).parent / "data" / "tiny.yaml")


def idx_bytes(array: np.ndarray) -> bytes:
    """An IDX file (MNIST's format) of unsigned bytes: magic 0x0000_08_<ndim>, the dimensions, the data."""
    dtype_code = 0x08  # unsigned byte
    header = struct.pack(">HBB", 0, dtype_code, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(np.uint8).tobytes()


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


def score_record(method, seed, std, rob, *, version=1, kind="selection", dataset="mnist5k", norm="linf", budget=50,
                 model="mlp"):
    """A minimal Record carrying two scores, for views that read only the cell and the scores."""
    from dcrobench.results import Budget, Evaluation, MethodRef, ProtocolRef, Record, Scores

    return Record(schema_version=1, dcrobench_version="test", protocol=ProtocolRef("quick", version, f"h{version}"),
                  method=MethodRef(method, "1", kind, {}), dataset=dataset, budget=Budget(budget, [], 0, False),
                  model=model, norm=norm, eps=0.1, seed=seed, scores=Scores(std, rob),
                  standard=Evaluation(std, 0.0, {}), adversarial=Evaluation(0.0, rob, {}), adversarial_training={},
                  cost={}, env={}, created_at="2026-01-01T00:00:00+00:00")
