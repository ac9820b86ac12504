"""Coreset selection from a proxy model's training dynamics.

- ``forgetting`` — Toneva et al. (ICLR 2019), example forgetting events during proxy training.

Like the gradient methods it selects ``budget`` images per class from a proxy model trained on the
full training set (``dcrobench_plugins.coresets.proxy``; settings = the protocol's ``proxy:``
block, passed as the ``proxy`` parameter), here from the training trace the proxy records: the
correctness of every example each time a minibatch presented it.
"""

from __future__ import annotations

import math

import torch

from dcrobench.imageset import ImageSet
from dcrobench.methods import CompressedSet, select_per_class
from dcrobench_plugins.coresets.proxy import train_proxy_with_trace
from dcrobench_plugins.coresets.proxy_selection import ProxySelection, top_per_class


def forgetting_counts(trace: torch.Tensor) -> torch.Tensor:
    """Forgetting events per example from a correctness trace ``Bool[T, N]`` (presentation order).

    A forgetting event is a presentation at which an example is misclassified after having been
    classified correctly at its previous presentation (``acc_t = 1 -> acc_{t+1} = 0``). Examples
    never classified correctly get ``inf`` (Toneva et al. count them as forgotten infinitely often).
    """
    trace = trace.bool()
    if trace.ndim != 2:
        raise ValueError(f"trace must be [presentations, examples], got shape {tuple(trace.shape)}")
    events = (trace[:-1] & ~trace[1:]).sum(0).double()
    events[~trace.any(0)] = math.inf
    return events


class Forgetting(ProxySelection):
    name = "forgetting"
    description = ("Toneva et al. 2019: most-forgotten examples (1->0 accuracy transitions while training "
                   "the proxy; never-learned = infinitely forgotten), per class, ties broken by seed")
    #: ``epochs`` (None = the proxy's) sets the length of the recorded training run; Toneva et al.
    #: count events over the whole training of the model (e.g. 200 epochs on CIFAR-10).
    default_params = {"proxy": None, "epochs": None}

    def compress(self, data: ImageSet, budget: int, seed: int, device: torch.device) -> CompressedSet:
        settings = self.proxy_settings()
        if self.params["epochs"] is not None:
            settings = settings.replace(epochs=int(self.params["epochs"]))
        _model, trace = train_proxy_with_trace(data, settings, seed, device, progress=self.progress)
        counts = forgetting_counts(trace)
        chosen = top_per_class(counts, data.labels, data.num_classes, budget, seed)
        finite = counts[torch.isfinite(counts)]
        sel = torch.cat(list(chosen.values()))
        meta = {
            **self.proxy_meta(settings),
            "never_learned": int((~torch.isfinite(counts)).sum()),
            "unforgettable": int((counts == 0).sum()),
            "mean_forgetting_finite": float(finite.mean()) if finite.numel() else 0.0,
            "selected_never_learned": int((~torch.isfinite(counts[sel])).sum()),
            "selected_min_count": float(counts[sel].min()),
        }
        return select_per_class(data, chosen, meta=meta)


__all__ = ["Forgetting", "forgetting_counts"]
