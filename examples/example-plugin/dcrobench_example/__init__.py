"""Example dcrobench plugin: per class, the images closest to the class mean ("prototypes")."""

from __future__ import annotations

import torch

from dcrobench.hookspecs import hookimpl
from dcrobench.imageset import ImageSet
from dcrobench.methods import CompressedSet, CompressionMethod, select_per_class


class Prototypes(CompressionMethod):
    name = "prototypes"
    kind = "selection"
    description = "example plugin: per class, the budget images nearest the class mean in pixel space"
    uses_seed = False
    default_params = {"metric": "l2"}

    def compress(self, data: ImageSet, budget: int, seed: int, device: torch.device) -> CompressedSet:
        p = 2.0 if self.params["metric"] == "l2" else 1.0
        chosen = {}
        for c in range(data.num_classes):
            idx = data.class_indices(c)
            x = data.images[idx].flatten(1).to(device)
            dist = torch.cdist(x, x.mean(0, keepdim=True), p=p).squeeze(1)
            chosen[c] = idx[dist.topk(budget, largest=False).indices.cpu()]
        return select_per_class(data, chosen, meta={"metric": self.params["metric"]})


@hookimpl
def register_methods():
    return [Prototypes]
