"""The two baselines of every table: the full training set and a class-balanced random subset."""

from __future__ import annotations

import torch

from dcrobench.hookspecs import hookimpl
from dcrobench.imageset import ImageSet
from dcrobench.methods import CompressedSet, CompressionMethod, select_per_class


class Full(CompressionMethod):
    name = "full"
    kind = "baseline"
    description = "the raw training set (no compression; the budget is ignored)"
    uses_seed = False
    uses_budget = False
    budget_limited_by_class = False
    cache_stage = False  # a copy of the training set is not worth storing

    def compress(self, data: ImageSet, budget: int, seed: int, device: torch.device) -> CompressedSet:
        return CompressedSet(data.images, data.labels, indices=torch.arange(len(data)))


class Random(CompressionMethod):
    name = "random"
    kind = "selection"
    description = "class-balanced uniform random subset, budget images per class"

    def compress(self, data: ImageSet, budget: int, seed: int, device: torch.device) -> CompressedSet:
        gen = torch.Generator().manual_seed(seed)
        chosen = {}
        for c in range(data.num_classes):
            idx = data.class_indices(c)
            chosen[c] = idx[torch.randperm(idx.numel(), generator=gen)[:budget]].sort().values
        return select_per_class(data, chosen)


@hookimpl
def register_methods():
    return [Full, Random]
