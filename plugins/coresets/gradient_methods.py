"""Coreset methods driven by a proxy model's last-layer gradients.

- ``grand``      — Paul et al. (NeurIPS 2021), GraNd: expected gradient norm early in training.
- ``craig``      — Mirzasoleiman et al. (ICML 2020), facility location over gradient similarities.
- ``gradmatch``  — Killamsetty et al. (ICML 2021), GRAD-MATCH: non-negative OMP gradient matching.
- ``glister``    — Killamsetty et al. (AAAI 2021), GLISTER-ONLINE: greedy validation log-likelihood.

All of them select ``budget`` images per class (DeepCore's class-balanced mode) from a proxy model
trained on the full training set (``dcrobench_plugins.coresets.proxy``; settings = the protocol's ``proxy:`` block,
passed as the ``proxy`` parameter). Gradients are those of the cross-entropy with respect to the
proxy's last linear layer (weights and bias), the cheap surrogate of the full gradient that CRAIG,
GRAD-MATCH, GLISTER and DeepCore use; they are handled through their two factors (embedding and
softmax - onehot), so the gradient kernel ``<g_i, g_j> = <r_i, r_j>(<e_i, e_j> + 1)`` is formed
without materialising ``C * (D + 1)``-dimensional vectors.

This module is also the ``coresets_gradient`` plugin (entry point), which registers ``forgetting``
(``training_dynamics.py``) too: records name the plugin of their method (``method.source.plugin``),
and forgetting's records say ``coresets_gradient``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from dcrobench.hookspecs import hookimpl
from dcrobench.imageset import ImageSet
from dcrobench.methods import CompressedSet, select_per_class
from dcrobench.progress import bar
from dcrobench_plugins.coresets.proxy import (
    build_model,
    gradient_distances,
    gradient_gram,
    gradient_sq_norms,
    last_layer_factors,
)
from dcrobench_plugins.coresets.proxy_selection import ProxySelection, top_per_class
from dcrobench_plugins.coresets.training_dynamics import Forgetting

from .submodular import facility_location_lazy_greedy, facility_location_value, nearest_assignment


# --------------------------------------------------------------------------------------------
# GraNd (Paul et al. 2021)
# --------------------------------------------------------------------------------------------
def grand_scores(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor, device) -> torch.Tensor:
    """Per-sample norm of the CE gradient wrt the last linear layer (weights and bias), ``[N]``."""
    emb, resid = last_layer_factors(model, images, labels, device)
    return gradient_sq_norms(emb.double(), resid.double()).sqrt().cpu()


class GraNd(ProxySelection):
    name = "grand"
    description = ("Paul et al. 2021: GraNd score = expected norm of the loss gradient early in training, "
                   "averaged over `repeats` proxy initialisations; keeps the highest per class. Uses the "
                   "last-layer gradient norm (weights + bias), DeepCore's cheap version of the full gradient")
    default_params = {"proxy": None, "repeats": 10, "grand_epochs": None}

    def compress(self, data: ImageSet, budget: int, seed: int, device: torch.device) -> CompressedSet:
        settings = self.proxy_settings()
        repeats = int(self.params["repeats"])
        if repeats < 1:
            raise ValueError("grand: repeats must be at least 1")
        epochs = self.params["grand_epochs"]
        epochs = settings.epochs if epochs is None else int(epochs)
        scores = torch.zeros(len(data), dtype=torch.float64)
        for r in bar(range(repeats), desc="grand proxies", enabled=self.progress):
            proxy_seed = int(seed) + 10007 * r  # r = 0 shares the proxy of the other methods
            if epochs == 0:  # GraNd at initialisation
                with torch.random.fork_rng(devices=[]):
                    torch.manual_seed(proxy_seed)
                    model = build_model(settings, data).to(device).eval()
            else:
                model = self.trained_proxy(data, settings.replace(epochs=epochs), proxy_seed, device)
            scores += grand_scores(model, data.images, data.labels, device)
        scores /= repeats
        chosen = top_per_class(scores, data.labels, data.num_classes, budget, seed)
        sel = torch.cat(list(chosen.values()))
        meta = {**self.proxy_meta(settings), "grand_epochs": epochs, "repeats": repeats,
                "mean_score": float(scores.mean()), "mean_selected_score": float(scores[sel].mean())}
        return select_per_class(data, chosen, meta=meta)


# --------------------------------------------------------------------------------------------
# CRAIG (Mirzasoleiman et al. 2020)
# --------------------------------------------------------------------------------------------
def craig_select(emb: torch.Tensor, resid: torch.Tensor, k: int, *, progress: bool | None = False
                 ) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Facility location over ``max dist - dist`` of last-layer gradients (lazy greedy).

    Returns ``(positions [k], weights [k] = cluster sizes, coverage F(S) / F(all))``.
    """
    dist = gradient_distances(emb.double(), resid.double())
    sim = dist.max() - dist
    sel, _gains = facility_location_lazy_greedy(sim, k, progress=progress, desc="craig greedy")
    assign = nearest_assignment(sim, sel)
    weights = torch.bincount(assign, minlength=k).double()
    full = float(sim.max(dim=1).values.sum())
    coverage = facility_location_value(sim, sel) / full if full > 0 else 1.0
    return sel, weights, coverage


class Craig(ProxySelection):
    name = "craig"
    description = ("Mirzasoleiman et al. 2020: per class, lazy-greedy facility location over last-layer "
                   "gradient similarities (max dist - dist); weights = sizes of the selected points' clusters")
    default_params = {"proxy": None}

    def compress(self, data: ImageSet, budget: int, seed: int, device: torch.device) -> CompressedSet:
        settings = self.proxy_settings()
        model = self.trained_proxy(data, settings, seed, device)
        emb, resid = last_layer_factors(model, data.images, data.labels, device)
        chosen, weights, coverage = {}, {}, []
        for c in bar(range(data.num_classes), desc="craig classes", enabled=self.progress):
            idx = data.class_indices(c)
            pos, w, cov = craig_select(emb[idx.to(emb.device)], resid[idx.to(emb.device)], budget)
            chosen[c] = idx[pos]
            weights[c] = w
            coverage.append(cov)
        meta = {**self.proxy_meta(settings), "coverage_per_class": coverage}
        return select_per_class(data, chosen, weights, meta=meta)


# --------------------------------------------------------------------------------------------
# GRAD-MATCH (Killamsetty et al. 2021)
# --------------------------------------------------------------------------------------------
def _nnls_ridge(q: np.ndarray, c: np.ndarray, lam: float, start: np.ndarray | None = None) -> np.ndarray:
    """argmin_{w >= 0} w^T (Q + lam I) w - 2 c^T w: Lawson-Hanson's active set method on the Gram form.

    ``start`` (feasible, ``>= 0``) warm-starts it: OMP passes the previous step's weights plus a zero
    for the new point, so a step usually costs one solve on the positive set instead of a cold NNLS
    (the solution is unique, the matrix being positive definite for ``lam > 0``; a tiny jitter keeps
    ``lam = 0`` solvable).
    """
    k = q.shape[0]
    mat = q + (lam + 1e-10 * max(1.0, float(np.abs(np.diag(q)).max(initial=0.0)))) * np.eye(k)
    w = np.zeros(k) if start is None else np.maximum(np.asarray(start, dtype=np.float64), 0.0)
    passive = w > 0
    tol = 1e-12 * max(1.0, float(np.abs(c).max(initial=0.0)), float(np.abs(np.diag(mat)).max(initial=0.0)))

    def solve_on(mask: np.ndarray) -> np.ndarray:
        z = np.zeros(k)
        if mask.any():
            z[mask] = np.linalg.solve(mat[np.ix_(mask, mask)], c[mask])
        return z

    def inner(w: np.ndarray, passive: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        for _ in range(k + 1):  # each pass drops at least one index from the passive set
            z = solve_on(passive)
            bad = passive & (z <= 0)
            if not bad.any():
                return z, passive
            gap = w[bad] - z[bad]
            alpha = float(np.min(np.where(gap > 0, w[bad] / np.where(gap > 0, gap, 1.0), 0.0)))
            w = w + alpha * (z - w)
            passive = passive & (w > tol)
            w[~passive] = 0.0
        return np.maximum(w, 0.0), passive

    if passive.any():
        w, passive = inner(w, passive)
    last_added = -1
    for _ in range(3 * k + 10):
        grad = c - mat @ w          # minus half the gradient: positive where raising w_j lowers the objective
        grad[passive] = -np.inf
        j = int(np.argmax(grad))
        if not grad[j] > tol or j == last_added:
            break
        trial = passive.copy()
        trial[j] = True
        w_new, p_new = inner(w, trial)
        last_added = j if not p_new[j] else -1   # rounding dropped it at once: stop rather than cycle
        w, passive = w_new, p_new
    return w


def omp_nonneg(kernel: torch.Tensor, k: int, lam: float = 0.5, tol: float = 1e-10
               ) -> tuple[list[int], np.ndarray, list[float]]:
    """Non-negative regularised OMP on a gradient kernel ``K = G G^T`` (class members as rows).

    Target ``b = sum_i g_i`` (the class's full gradient). Each step adds the point most positively
    correlated with the residual ``b - sum_S w_j g_j`` and refits ``w >= 0`` minimising
    ``||sum_S w_j g_j - b||^2 + lam ||w||^2`` (warm-started from the previous weights). Stops early
    only if no point correlates positively with the residual (or the residual vanishes). Returns
    ``(support, weights, residual norms after each step)``.
    """
    kern = kernel.double().cpu().numpy()
    n = kern.shape[0]
    steps = min(k, n)
    corr0 = kern.sum(1)                    # A^T b
    bb = float(corr0.sum())                # ||b||^2
    cols = np.empty((n, steps))            # K[:, support], filled a column per step
    support: list[int] = []
    w = np.zeros(0)
    residuals: list[float] = []
    for t in range(steps):
        proj = corr0 - cols[:, :t] @ w
        proj[support] = -math.inf
        j = int(np.argmax(proj))
        if not proj[j] > tol * max(1.0, abs(bb)):
            break
        support.append(j)
        cols[:, t] = kern[:, j]
        q = cols[support, : t + 1]
        c = corr0[support]
        w = _nnls_ridge(q, c, lam, start=np.append(w, 0.0))
        res2 = bb - 2.0 * float(w @ c) + float(w @ q @ w)
        residuals.append(math.sqrt(max(res2, 0.0)))
        if residuals[-1] <= tol * math.sqrt(max(bb, 1e-300)):
            break
    return support, w, residuals


def gradmatch_select(emb: torch.Tensor, resid: torch.Tensor, k: int, lam: float
                     ) -> tuple[torch.Tensor, torch.Tensor, dict[str, Any]]:
    """OMP support with its NNLS weights; zero-weight picks and an early stop are filled up to ``k``
    with the points most correlated with the final residual, each with weight 1 (as CORDS does)."""
    kern = gradient_gram(emb.double(), resid.double(), emb.double(), resid.double()).cpu()
    support, w, residuals = omp_nonneg(kern, k, lam)
    keep = [(j, float(wj)) for j, wj in zip(support, w) if wj > 0]
    pos = [j for j, _ in keep]
    weights = [wj for _, wj in keep]
    filled = 0
    if len(pos) < k:
        corr0 = kern.sum(1)
        proj = corr0 - (kern[:, support] @ torch.from_numpy(w) if support else 0.0)
        proj[pos] = -math.inf
        extra = torch.sort(proj, descending=True, stable=True).indices[: k - len(pos)].tolist()
        pos += extra
        weights += [1.0] * len(extra)
        filled = len(extra)
    info = {"residual": residuals[-1] if residuals else None,
            "relative_residual": (residuals[-1] / math.sqrt(max(float(kern.sum()), 1e-300))) if residuals else None,
            "filled": filled, "omp_steps": len(support)}
    return torch.tensor(pos, dtype=torch.long), torch.tensor(weights, dtype=torch.float64), info


class GradMatch(ProxySelection):
    name = "gradmatch"
    description = ("Killamsetty et al. 2021 (GRAD-MATCH): per class, non-negative regularised OMP choosing points "
                   "whose weighted last-layer gradients match the class's full gradient; weights returned")
    default_params = {"proxy": None, "lam": 0.5}

    def compress(self, data: ImageSet, budget: int, seed: int, device: torch.device) -> CompressedSet:
        settings = self.proxy_settings()
        lam = float(self.params["lam"])
        if lam < 0:
            raise ValueError("gradmatch: lam must be >= 0")
        model = self.trained_proxy(data, settings, seed, device)
        emb, resid = last_layer_factors(model, data.images, data.labels, device)
        chosen, weights, infos = {}, {}, []
        for c in bar(range(data.num_classes), desc="gradmatch classes", enabled=self.progress):
            idx = data.class_indices(c)
            dev_idx = idx.to(emb.device)
            pos, w, info = gradmatch_select(emb[dev_idx], resid[dev_idx], budget, lam)
            chosen[c] = idx[pos]
            weights[c] = w
            infos.append(info)
        meta = {**self.proxy_meta(settings), "relative_residual_per_class": [i["relative_residual"] for i in infos],
                "filled_per_class": [i["filled"] for i in infos]}
        return select_per_class(data, chosen, weights, meta=meta)


# --------------------------------------------------------------------------------------------
# GLISTER-ONLINE (Killamsetty et al. 2021)
# --------------------------------------------------------------------------------------------
def _resid(emb: torch.Tensor, labels: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    r = torch.softmax(emb @ weight.T + bias, dim=1)
    r[torch.arange(r.shape[0], device=r.device), labels] -= 1.0
    return r


def glister_greedy(emb: torch.Tensor, labels: torch.Tensor, val_emb: torch.Tensor, val_labels: torch.Tensor,
                   weight: torch.Tensor, bias: torch.Tensor, k: int, eta: float, *, progress: bool | None = False
                   ) -> tuple[torch.Tensor, torch.Tensor, list[tuple[torch.Tensor, torch.Tensor]]]:
    """Greedy GLISTER-ONLINE over the last layer ``theta = (W, b)`` with fixed embeddings.

    Gain of candidate ``e`` at ``theta_S``: the first-order Taylor change of the mean validation
    log-likelihood under one SGD step on ``e``, ``eta * <grad L_e(theta_S), grad L_V(theta_S)>``.
    After each pick ``theta_S <- theta_S - eta * grad L_e(theta_S)`` and both gradients are
    recomputed in closed form (exact for the last layer). Returns ``(positions, gains, thetas)`` with
    ``thetas[t]`` the parameters before step ``t`` (and a final entry after the last step).
    """
    w = weight.detach().double().clone()
    b = bias.detach().double().clone()
    emb, val_emb = emb.double(), val_emb.double()
    m = emb.shape[0]
    available = torch.ones(m, dtype=torch.bool, device=emb.device)
    picks, gains, thetas = [], [], [(w.clone(), b.clone())]
    for _ in bar(range(k), desc="glister greedy", enabled=progress):
        rv = _resid(val_emb, val_labels, w, b)
        gw = rv.T @ val_emb / val_emb.shape[0]          # dL_V/dW  [C, D]
        gb = rv.mean(0)                                 # dL_V/db  [C]
        r = _resid(emb, labels, w, b)                   # candidates' logit gradients at theta_S
        g = eta * ((emb @ gw.T + gb) * r).sum(1)
        g[~available] = -math.inf
        j = int(torch.argmax(g))
        picks.append(j)
        gains.append(float(g[j]))
        available[j] = False
        w = w - eta * torch.outer(r[j], emb[j])
        b = b - eta * r[j]
        thetas.append((w.clone(), b.clone()))
    return torch.tensor(picks, dtype=torch.long), torch.tensor(gains, dtype=torch.float64), thetas


class Glister(ProxySelection):
    name = "glister"
    description = ("Killamsetty et al. 2021 (GLISTER-ONLINE): per class, greedy selection maximising the "
                   "validation log-likelihood under a one-step Taylor approximation of the last layer, "
                   "updating the parameters after each pick; validation = a seeded held-out split of train")
    default_params = {"proxy": None, "val_fraction": 0.1, "eta": None}

    def compress(self, data: ImageSet, budget: int, seed: int, device: torch.device) -> CompressedSet:
        settings = self.proxy_settings()
        frac = float(self.params["val_fraction"])
        if not 0.0 < frac < 1.0:
            raise ValueError("glister: val_fraction must lie in (0, 1)")
        eta = settings.lr if self.params["eta"] is None else float(self.params["eta"])
        model = self.trained_proxy(data, settings, seed, device)
        emb, _ = last_layer_factors(model, data.images, data.labels, device)
        weight, bias = model.classifier.weight.detach(), model.classifier.bias.detach()
        labels = data.labels.to(emb.device)
        gen = torch.Generator().manual_seed(int(seed) + 104729)
        chosen, gains, overlap = {}, [], []
        for c in bar(range(data.num_classes), desc="glister classes", enabled=self.progress):
            idx = data.class_indices(c)
            idx = idx[torch.randperm(idx.numel(), generator=gen)]
            n_val = max(1, int(round(frac * idx.numel())))
            val, cand = idx[:n_val], idx[n_val:]
            if cand.numel() < budget:  # class too small to hold out a split: candidates = whole class
                cand = idx
                overlap.append(c)
            pos, g, _ = glister_greedy(emb[cand.to(emb.device)], labels[cand.to(emb.device)],
                                       emb[val.to(emb.device)], labels[val.to(emb.device)], weight, bias,
                                       budget, eta)
            chosen[c] = cand[pos].sort().values
            gains.append(float(g.sum()))
        meta = {**self.proxy_meta(settings), "eta": eta, "val_fraction": frac,
                "gain_sum_per_class": gains, "classes_without_holdout": overlap}
        return select_per_class(data, chosen, meta=meta)


@hookimpl
def register_methods():
    # forgetting lives in training_dynamics.py; it stays in this plugin so its records keep their source
    return [Forgetting, GraNd, Craig, GradMatch, Glister]
