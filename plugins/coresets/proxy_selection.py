"""What every coreset method built on the proxy model shares: the base class ``ProxySelection``
and ``top_per_class``, the per-class ranking of the score-based methods (forgetting, GraNd).

A ``ProxySelection`` takes the proxy's settings from its ``proxy`` parameter (the protocol's
``proxy:`` block, so they are part of the recorded protocol), trains or loads the proxy
(``dcrobench_plugins.coresets.proxy``) with the run's progress switch, and records the settings in
the compressed set's metadata. What a method does with the proxy (embeddings, last-layer
gradients, the training trace) stays in its subclass.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from dcrobench.imageset import ImageSet
from dcrobench.methods import CompressionMethod, json_safe
from dcrobench_plugins.coresets.proxy import ProxySettings, train_proxy


class ProxySelection(CompressionMethod):
    """Base class of the selection methods that use the proxy model."""

    kind = "selection"
    uses_seed = True
    protocol_blocks = ("proxy",)
    default_params: dict[str, Any] = {"proxy": None}

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self.proxy_settings()  # a bad proxy block is refused before any work

    def proxy_settings(self) -> ProxySettings:
        """The settings of the ``proxy`` parameter (``None``: the defaults)."""
        return ProxySettings.from_dict(self.params.get("proxy"))

    def trained_proxy(self, data: ImageSet, settings: ProxySettings, seed: int, device: torch.device) -> nn.Module:
        """The proxy trained on ``data`` (eval mode, on ``device``; cached), drawing this run's progress."""
        return train_proxy(data, settings, seed, device, progress=self.progress)

    @staticmethod
    def proxy_meta(settings: ProxySettings) -> dict[str, Any]:
        """The proxy's settings as the compressed set's metadata records them."""
        return {"proxy": json_safe(settings.to_dict())}


def top_per_class(scores: torch.Tensor, labels: torch.Tensor, num_classes: int, budget: int, seed: int,
                  ) -> dict[int, torch.Tensor]:
    """The ``budget`` highest-scoring indices of every class; ties broken by a seeded permutation."""
    gen = torch.Generator().manual_seed(int(seed))
    scores = scores.detach().cpu().double()
    labels = labels.cpu()
    chosen = {}
    for c in range(num_classes):
        idx = torch.nonzero(labels == c).flatten()
        perm = idx[torch.randperm(idx.numel(), generator=gen)]
        order = torch.sort(scores[perm], descending=True, stable=True).indices
        chosen[c] = perm[order[:budget]].sort().values
    return chosen


__all__ = ["ProxySelection", "top_per_class"]
