"""DeepFool (Moosavi-Dezfooli, Fawzi & Frossard, CVPR 2016): the minimal perturbation that changes a
classifier's decision, by iterated linearisation of the decision boundaries.

At every step, for the points whose predicted label ``k0`` has not changed yet, every other class
``k`` gives ``w_k = grad f_k - grad f_k0`` and ``f'_k = f_k - f_k0``; the closest linearised
boundary ``l = argmin_k |f'_k| / ||w_k||_q`` is crossed by ``r = |f'_l| / ||w_l||_2^2 * w_l`` (l2, q = 2)
or ``r = |f'_l| / ||w_l||_1 * sign(w_l)`` (l-inf, q = 1, the paper's l_p variant). The
perturbation accumulates and the iterate is ``x + (1 + overshoot) * r_total``, until the label
changes or ``max_iter`` steps have run. All points and classes are handled in one batch: one
forward pass and one backward pass per class per step.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class DeepFoolResult:
    perturbation: torch.Tensor  # [N, ...] the final (1 + overshoot) * r_total
    flipped: torch.Tensor       # [N] bool: the label changed within max_iter steps
    iterations: torch.Tensor    # [N] steps taken

    norm: str = "l2"

    @property
    def radius(self) -> torch.Tensor:
        """The perturbation's norm per point, ``inf`` where the label never changed."""
        flat = self.perturbation.flatten(1)
        r = flat.abs().amax(1) if self.norm == "linf" else flat.norm(dim=1)
        return torch.where(self.flipped, r, torch.full_like(r, float("inf")))


def deepfool(model: nn.Module, x: torch.Tensor, *, max_iter: int = 50, overshoot: float = 0.02,
             batch_size: int = 256, norm: str = "l2", clip: bool = False) -> DeepFoolResult:
    """DeepFool on every row of ``x`` (the model in eval mode). Without ``clip`` the iterates are not
    kept in [0, 1], as in the paper; with it every iterate is clipped to the image box (as attack
    libraries do), so the perturbation found is one a real image can carry."""
    if norm not in ("l2", "linf"):
        raise ValueError(f"deepfool: norm must be 'l2' or 'linf', got {norm!r}")
    if max_iter < 1:
        raise ValueError(f"deepfool: max_iter must be at least 1, got {max_iter}")
    model.eval()
    req = [p.requires_grad for p in model.parameters()]
    for p in model.parameters():
        p.requires_grad_(False)
    try:
        with torch.enable_grad():  # the attack engine calls attacks under no_grad
            parts = [_deepfool_batch(model, x[s:s + batch_size], max_iter, overshoot, norm, clip)
                     for s in range(0, x.shape[0], batch_size)]
    finally:
        for p, r in zip(model.parameters(), req):
            p.requires_grad_(r)
    return DeepFoolResult(*(torch.cat(t) for t in zip(*parts)), norm=norm)


def _deepfool_batch(model: nn.Module, x0: torch.Tensor, max_iter: int, overshoot: float, norm: str, clip: bool):
    n = x0.shape[0]

    def iterate(rows: torch.Tensor) -> torch.Tensor:
        out = x0[rows] + (1 + overshoot) * r_total[rows]
        return out.clamp(0.0, 1.0) if clip else out

    x0 = x0.detach()
    with torch.no_grad():
        k0 = model(x0).argmax(1)
    r_total = torch.zeros_like(x0)
    active = torch.ones(n, dtype=torch.bool, device=x0.device)
    steps = torch.zeros(n, dtype=torch.long, device=x0.device)
    for _ in range(max_iter):
        idx = torch.nonzero(active).flatten()
        if idx.numel() == 0:
            break
        xi = iterate(idx).detach().requires_grad_(True)
        logits = model(xi)
        num_classes = logits.shape[1]
        grads = torch.stack([torch.autograd.grad(logits[:, c].sum(), xi, retain_graph=c + 1 < num_classes)[0]
                             for c in range(num_classes)], dim=1).flatten(2)        # [m, C, D]
        rows = torch.arange(idx.numel(), device=x0.device)
        lab = k0[idx]
        w = grads - grads[rows, lab].unsqueeze(1)                                     # [m, C, D]
        f = (logits - logits[rows, lab].unsqueeze(1)).detach()                         # [m, C]
        w_norm = (w.abs().sum(dim=2) if norm == "linf" else w.norm(dim=2)).clamp_min(1e-12)
        dist = f.abs() / w_norm
        dist[rows, lab] = float("inf")
        l_hat = dist.argmin(1)
        w_l = w[rows, l_hat]
        gap = f[rows, l_hat].abs() + 1e-4                                              # 1e-4: DeepFool's nudge
        if norm == "linf":
            r = (gap / w_norm[rows, l_hat])[:, None] * w_l.sign()
        else:
            r = (gap / w_norm[rows, l_hat] ** 2)[:, None] * w_l
        r_total[idx] += r.view_as(xi)
        steps[idx] += 1
        with torch.no_grad():
            now = model(iterate(idx)).argmax(1)
        active[idx[now != lab]] = False
    every = torch.arange(n, device=x0.device)
    return iterate(every) - x0, ~active, steps


__all__ = ["deepfool", "DeepFoolResult"]
