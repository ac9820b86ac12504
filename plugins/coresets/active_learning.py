"""Coreset selection with active-learning criteria on the proxy model (DeepCore's remaining methods).

- ``uncertainty-lc``, ``uncertainty-margin``, ``uncertainty-entropy`` — uncertainty sampling
  (Lewis & Gale 1994; Settles 2009; Coleman et al., ICLR 2020 "selection via proxy"): the points the
  proxy is least sure of: lowest top probability, smallest gap between the two top probabilities,
  highest predictive entropy.
- ``deepfool`` — DFAL (Ducoffe & Precioso 2018): the points with the smallest DeepFool
  perturbation, i.e. closest to the proxy's decision boundary.
- ``cal`` — contrastive active learning (Margatina et al., EMNLP 2021): the points whose predicted
  distribution diverges most from their nearest neighbours' in the proxy's feature space,
  ``s(x) = mean_{j in kNN(x)} KL(p(x_j) || p(x))``.
- ``contextual-diversity`` — Agarwal et al. (ECCV 2020): k-center greedy in the space of the
  proxy's predicted distributions, dissimilarity = symmetric KL divergence.

Like every proxy method they select ``budget`` images per class (DeepCore's balanced mode) from a
proxy trained on the full training set (the protocol's ``proxy:`` block). Where DeepCore departs
from the papers we follow the papers: least confidence scores the softmax probability (DeepCore:
the raw top logit), and Cal keeps the *highest* divergence (DeepCore sorts ascending). DeepCore's
Cal finds neighbours with an ImageNet-pretrained ResNet-18, which cannot be downloaded here; the
proxy's penultimate embedding is used instead. Contextual diversity for single-label
classification reduces to one class-specific confusion vector per image (its softmax), so the
CDAL distance is the symmetric KL between softmax vectors, as in DeepCore.

Divergences are computed in log space, from ``log_softmax`` of the proxy's logits (float64), never
from floored probabilities: a confident proxy puts many classes far below any floor (a logit gap of
28 is already ``p < 1e-12``), and flooring there rewrites ``log p`` and hence the KL terms, the
CAL scores and the contextual-diversity centers. A term ``p log(p / q)`` is 0 where ``p`` is 0.
"""

from __future__ import annotations

from typing import Any

import torch

from dcrobench.errors import MethodError
from dcrobench.hookspecs import hookimpl
from dcrobench.imageset import ImageSet
from dcrobench.methods import CompressedSet, select_per_class
from dcrobench_plugins.attacks.deepfool import deepfool
from dcrobench_plugins.coresets.proxy import embeddings
from dcrobench_plugins.coresets.proxy_selection import ProxySelection, top_per_class

from .geometric_methods import farthest_first


@torch.no_grad()
def class_log_probabilities(model: torch.nn.Module, images: torch.Tensor, device, batch_size: int = 512) -> torch.Tensor:
    """``log_softmax`` of the model's logits ``[N, C]`` (float64, on CPU): exact far into the tails,
    where a confident proxy's probabilities are tiny or underflow to 0."""
    model.eval()
    out = [torch.log_softmax(model(images[s:s + batch_size].to(device)).double(), dim=1).cpu()
           for s in range(0, images.shape[0], batch_size)]
    return torch.cat(out)


def class_probabilities(model: torch.nn.Module, images: torch.Tensor, device, batch_size: int = 512) -> torch.Tensor:
    """Softmax of the model's logits ``[N, C]`` (float64, on CPU)."""
    return class_log_probabilities(model, images, device, batch_size).exp()


def uncertainty_scores(probs: torch.Tensor, criterion: str) -> torch.Tensor:
    """Higher = more uncertain: ``1 - max p`` (lc), ``-(p_1 - p_2)`` (margin), ``-sum p log p`` (entropy)."""
    if criterion == "lc":
        return 1.0 - probs.max(1).values
    if criterion == "margin":
        top2 = probs.topk(2, dim=1).values
        return -(top2[:, 0] - top2[:, 1])
    if criterion == "entropy":
        return -torch.special.xlogy(probs, probs).sum(1)  # 0 log 0 = 0, no floor
    raise ValueError(f"unknown uncertainty criterion {criterion!r} (lc, margin, entropy)")


def kl_rows(log_p: torch.Tensor, log_q: torch.Tensor) -> torch.Tensor:
    """``KL(p_i || q_i)`` along the last dimension, from log-probabilities: ``sum p (log p - log q)``,
    a term being 0 where ``p`` is 0 (and ``+inf`` where ``q`` is 0 but ``p`` is not)."""
    p = log_p.exp()
    return torch.where(p > 0, p * (log_p - log_q), 0.0).sum(-1)


def cal_scores(emb: torch.Tensor, log_probs: torch.Tensor, neighbors: int, block: int = 2048) -> torch.Tensor:
    """CAL: ``mean_{j in kNN(i)} KL(p_j || p_i)`` with neighbours by Euclidean distance of ``emb``
    (the point itself excluded), for the rows of one pool ``[n]``; ``log_probs`` are the rows' log-softmax."""
    n = emb.shape[0]
    k = min(int(neighbors), n - 1)
    if k < 1:
        return torch.zeros(n, dtype=log_probs.dtype)
    emb = emb.double()
    scores = torch.empty(n, dtype=log_probs.dtype)
    for s in range(0, n, block):
        rows = torch.arange(s, min(n, s + block))
        d = torch.cdist(emb[rows], emb)
        d[torch.arange(rows.numel()), rows] = float("inf")
        knn = d.topk(k, dim=1, largest=False).indices.cpu()              # [b, k]
        scores[rows] = kl_rows(log_probs[knn], log_probs[rows].unsqueeze(1).expand(-1, k, -1)).mean(1)
    return scores


def symmetric_kl_to(log_probs: torch.Tensor, p: int, probs: torch.Tensor | None = None) -> torch.Tensor:
    """``0.5 KL(p_p || p_i) + 0.5 KL(p_i || p_p) = 0.5 sum (p_p - p_i)(log p_p - log p_i)`` for every
    row ``i`` ``[n]``, from the log-softmax rows (``probs``: their ``exp``, if already computed)."""
    if probs is None:
        probs = log_probs.exp()
    dp, dlog = probs[p] - probs, log_probs[p] - log_probs
    return 0.5 * torch.where(dp == 0, 0.0, dp * dlog).sum(1)  # equal probabilities (also both 0) add 0


class _UncertaintySelection(ProxySelection):
    criterion = ""
    default_params = {"proxy": None}

    def compress(self, data: ImageSet, budget: int, seed: int, device: torch.device) -> CompressedSet:
        settings = self.proxy_settings()
        model = self.trained_proxy(data, settings, seed, device)
        scores = uncertainty_scores(class_probabilities(model, data.images, device), self.criterion)
        chosen = top_per_class(scores, data.labels, data.num_classes, budget, seed)
        sel = torch.cat(list(chosen.values()))
        meta = {**self.proxy_meta(settings), "criterion": self.criterion,
                "mean_score": float(scores.mean()), "mean_selected_score": float(scores[sel].mean())}
        return select_per_class(data, chosen, meta=meta)


class LeastConfidence(_UncertaintySelection):
    name = "uncertainty-lc"
    criterion = "lc"
    description = "uncertainty sampling (Settles 2009; Coleman et al. 2020): lowest proxy top-class probability per class"


class Margin(_UncertaintySelection):
    name = "uncertainty-margin"
    criterion = "margin"
    description = "uncertainty sampling: smallest gap between the proxy's two highest class probabilities, per class"


class Entropy(_UncertaintySelection):
    name = "uncertainty-entropy"
    criterion = "entropy"
    description = "uncertainty sampling: highest entropy of the proxy's predicted distribution, per class"


class DeepFoolSelection(ProxySelection):
    name = "deepfool"
    description = ("DFAL (Ducoffe & Precioso 2018): smallest DeepFool (l2) perturbation of the proxy first, per class; "
                   "points DeepFool cannot flip in max_iter steps come last")
    default_params = {"proxy": None, "max_iter": 50, "overshoot": 0.02}

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        if int(self.params["max_iter"]) < 1 or float(self.params["overshoot"]) < 0:
            raise MethodError("deepfool: max_iter must be >= 1 and overshoot >= 0")

    def compress(self, data: ImageSet, budget: int, seed: int, device: torch.device) -> CompressedSet:
        settings = self.proxy_settings()
        model = self.trained_proxy(data, settings, seed, device)
        result = deepfool(model, data.images.to(device), max_iter=int(self.params["max_iter"]),
                          overshoot=float(self.params["overshoot"]))
        radius = result.radius.detach().cpu().double()
        chosen = top_per_class(-radius, data.labels, data.num_classes, budget, seed)
        sel = torch.cat(list(chosen.values()))
        finite = radius[torch.isfinite(radius)]
        meta = {**self.proxy_meta(settings), "not_flipped": int((~result.flipped).sum()),
                "median_radius": float(finite.median()) if finite.numel() else None,
                "max_selected_radius": float(radius[sel].max()),
                "mean_iterations": float(result.iterations.double().mean())}
        return select_per_class(data, chosen, meta=meta)


class Cal(ProxySelection):
    name = "cal"
    version = "2"  # 2: KL from log-softmax (1 floored probabilities at 1e-12)
    description = ("CAL (Margatina et al. 2021): highest mean KL(p(neighbour) || p(x)) over the x's nearest "
                   "neighbours in the proxy's embedding space, per class")
    default_params = {"proxy": None, "neighbors": 10}

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        if int(self.params["neighbors"]) < 1:
            raise MethodError("cal: neighbors must be at least 1")

    def compress(self, data: ImageSet, budget: int, seed: int, device: torch.device) -> CompressedSet:
        settings = self.proxy_settings()
        model = self.trained_proxy(data, settings, seed, device)
        emb = embeddings(model, data.images, device)
        log_probs = class_log_probabilities(model, data.images, device)
        scores = torch.zeros(len(data), dtype=torch.float64)
        for c in range(data.num_classes):  # neighbours within the class (DeepCore's balanced mode)
            idx = data.class_indices(c)
            if idx.numel():
                scores[idx] = cal_scores(emb[idx.to(emb.device)], log_probs[idx], int(self.params["neighbors"]))
        chosen = top_per_class(scores, data.labels, data.num_classes, budget, seed)
        sel = torch.cat(list(chosen.values()))
        meta = {**self.proxy_meta(settings), "neighbors": int(self.params["neighbors"]),
                "mean_score": float(scores.mean()), "mean_selected_score": float(scores[sel].mean())}
        return select_per_class(data, chosen, meta=meta)


class ContextualDiversity(ProxySelection):
    name = "contextual-diversity"
    version = "2"  # 2: symmetric KL from log-softmax (1 floored probabilities at 1e-12)
    description = ("contextual diversity (Agarwal et al. 2020): per class, k-center greedy over the proxy's "
                   "softmax vectors with the symmetric KL divergence; seeded random first center")
    default_params = {"proxy": None}

    def compress(self, data: ImageSet, budget: int, seed: int, device: torch.device) -> CompressedSet:
        settings = self.proxy_settings()
        model = self.trained_proxy(data, settings, seed, device)
        log_probs = class_log_probabilities(model, data.images, device)
        gen = torch.Generator().manual_seed(int(seed))
        chosen, radii = {}, []
        for c in range(data.num_classes):
            idx = data.class_indices(c)
            lpc = log_probs[idx]
            pc = lpc.exp()
            start = int(torch.randint(idx.numel(), (1,), generator=gen))
            order, radius = farthest_first(idx.numel(), budget, start, lambda p: symmetric_kl_to(lpc, p, pc))
            chosen[c] = idx[order].sort().values
            radii.append(radius)
        meta = {**self.proxy_meta(settings), "dissimilarity": "symmetric KL of proxy softmax vectors",
                "radius_per_class": radii}
        return select_per_class(data, chosen, meta=meta)


@hookimpl
def register_methods():
    return [LeastConfidence, Margin, Entropy, DeepFoolSelection, Cal, ContextualDiversity]


__all__ = ["class_log_probabilities", "class_probabilities", "uncertainty_scores", "cal_scores", "symmetric_kl_to", "kl_rows",
           "LeastConfidence", "Margin", "Entropy", "DeepFoolSelection", "Cal", "ContextualDiversity"]
