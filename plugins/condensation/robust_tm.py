"""Robust dataset distillation on the trajectory-matching machinery of ``tm.py``.

Both methods keep MTT's distillation stage (student rollouts from an expert checkpoint, the
normalised parameter distance, learnable step size, the expert cache and resumption) and change
how the experts are trained, which is where each paper puts its robustness:

- ``mat`` — Matching Adversarial Trajectories (Lai et al. 2025, arXiv 2503.12069): the experts are
  adversarially trained (PGD-AT, Madry et al.: every minibatch is replaced by its l-inf PGD
  adversarial examples, ``adv_eps`` in pixel units, random start) and the stored trajectory is an
  exponential moving average of the expert's weights (``ema_decay`` per step), MAT's smoothing of
  the fast-changing adversarial-training weights. A model trained naturally on the distilled set
  then follows a robust trajectory.
- ``guard`` — GUARD (Xue et al., AAAI 2025): curvature regularisation instead of adversarial
  training. GUARD regularises the model the distilled data is extracted from (in its official code,
  the SRe2L "squeeze" teacher) with the CURE penalty (Moosavi-Dezfooli et al. 2019)
  ``R(x) = || grad_x l(x + h z) - grad_x l(x) ||``, ``z = grad_x l(x) / ||grad_x l(x)||``, added as
  ``lam * mean R`` to the cross-entropy. dcrobench applies it to the matching objective of the
  benchmark paper's strongest distillation method, trajectory matching: the experts, the models
  whose trajectories the synthetic set is distilled from, are trained with the regularised loss.
  As in the official code, gradients are those of the batch-mean loss and ``z`` is the normalised
  input gradient (not its sign), with GUARD's defaults ``lam = 100``, ``h = 3`` (in the network's
  normalised input space).

Both run in the normalised pixel space of the condensation nets: an l-inf radius ``eps`` in pixels is
``eps / std_c`` for channel ``c``, and adversarial inputs are clamped to the image box [0, 1].
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from dcrobench.errors import MethodError

from .common import BatchLoss, Context
from .tm import TM, ParameterEMA


def pgd_normalized(model: nn.Module, x: torch.Tensor, y: torch.Tensor, ctx: Context, eps: float, step: float,
                   steps: int, gen: torch.Generator) -> torch.Tensor:
    """l-inf PGD with random start on the cross-entropy, for inputs in normalised space: the ball of
    radius ``eps`` pixels, intersected with the [0, 1] image box (``ctx.lo``/``ctx.hi``)."""
    eps_z, step_z = eps / ctx.std, step / ctx.std
    noise = (torch.rand(x.shape, generator=gen) * 2 - 1).to(x.device)
    x_adv = torch.minimum(torch.maximum(x + noise * eps_z, ctx.lo), ctx.hi).detach()
    for _ in range(steps):
        x_adv.requires_grad_(True)
        grad = torch.autograd.grad(F.cross_entropy(model(x_adv), y), x_adv)[0]
        x_adv = x_adv.detach() + step_z * grad.sign()
        x_adv = torch.minimum(torch.maximum(x_adv, x - eps_z), x + eps_z)
        x_adv = torch.minimum(torch.maximum(x_adv, ctx.lo), ctx.hi).detach()
    return x_adv


def curvature_penalty(model: nn.Module, x: torch.Tensor, y: torch.Tensor, h: float) -> torch.Tensor:
    """CURE/GUARD's ``|| grad_x l(x + h z) - grad_x l(x) ||`` per example ``[B]`` (``l`` the batch-mean
    cross-entropy, ``z`` the unit input-gradient direction), differentiable w.r.t. the model."""
    x = x.detach().requires_grad_(True)
    g = torch.autograd.grad(F.cross_entropy(model(x), y), x)[0].detach()
    shape = (-1,) + (1,) * (x.ndim - 1)
    z = h * (g + 1e-7) / (g.flatten(1).norm(dim=1).view(shape) + 1e-7)
    diff = F.cross_entropy(model(x + z), y) - F.cross_entropy(model(x), y)
    grad_diff = torch.autograd.grad(diff, x, create_graph=True)[0]
    return grad_diff.flatten(1).norm(dim=1)


class MAT(TM):
    name = "mat"
    version = "1"
    description = ("matching adversarial trajectories (Lai et al. 2025): trajectory matching whose experts are "
                   "PGD-adversarially trained, trajectories smoothed by an EMA of the weights")
    default_params: ClassVar[dict[str, Any]] = {
        **TM.default_params,
        "adv_eps": 8 / 255,        # l-inf radius of the experts' PGD, pixels
        "adv_step": 2 / 255,       # PGD step, pixels
        "adv_steps": 10,
        "ema_decay": 0.99,         # (ours) per-step EMA of the expert weights
    }
    expert_params = TM.expert_params + ("adv_eps", "adv_step", "adv_steps", "ema_decay")
    expert_kind = buffer_prefix = "mat-experts"

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        p = self.params
        if not float(p["adv_eps"]) > 0 or not float(p["adv_step"]) > 0 or int(p["adv_steps"]) < 1:
            raise MethodError("mat: adv_eps and adv_step must be > 0 and adv_steps >= 1")
        if not 0 <= float(p["ema_decay"]) < 1:
            raise MethodError(f"mat: ema_decay must be in [0, 1), got {p['ema_decay']}")

    def expert_loss(self, ctx: Context) -> BatchLoss:
        p = self.params

        def adversarial_ce(model, x, y, gen):
            x_adv = pgd_normalized(model, x, y, ctx, float(p["adv_eps"]), float(p["adv_step"]),
                                   int(p["adv_steps"]), gen)
            return F.cross_entropy(model(x_adv), y)

        return adversarial_ce

    def trajectory_smoother(self, model: nn.Module) -> ParameterEMA:
        return ParameterEMA(model, float(self.params["ema_decay"]))

    def extra_meta(self, ctx: Context) -> dict:
        p = self.params
        return {**super().extra_meta(ctx),
                "experts": f"PGD-AT l-inf eps {float(p['adv_eps']):.4g} ({int(p['adv_steps'])} steps), "
                           f"trajectory = EMA of the weights (decay {float(p['ema_decay'])})"}


class GUARD(TM):
    name = "guard"
    version = "1"
    description = ("GUARD (Xue et al. 2025): curvature regularisation (CURE penalty, lam * ||grad l(x+hz) - "
                   "grad l(x)||) of the models the set is distilled from, on trajectory matching")
    default_params: ClassVar[dict[str, Any]] = {
        **TM.default_params,
        "curvature_weight": 100.0,   # GUARD's lamda
        "curvature_h": 3.0,          # GUARD's h
    }
    expert_params = TM.expert_params + ("curvature_weight", "curvature_h")
    expert_kind = buffer_prefix = "guard-experts"

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        if float(self.params["curvature_weight"]) < 0 or not float(self.params["curvature_h"]) > 0:
            raise MethodError("guard: curvature_weight must be >= 0 and curvature_h > 0")

    def expert_loss(self, ctx: Context) -> BatchLoss:
        lam, h = float(self.params["curvature_weight"]), float(self.params["curvature_h"])

        def regularised_ce(model, x, y, gen):
            return F.cross_entropy(model(x), y) + lam * curvature_penalty(model, x, y, h).mean()

        return regularised_ce

    def extra_meta(self, ctx: Context) -> dict:
        p = self.params
        return {**super().extra_meta(ctx),
                "experts": f"cross-entropy + {float(p['curvature_weight']):g} * mean CURE curvature "
                           f"(h = {float(p['curvature_h']):g}, normalised input space)"}


__all__ = ["MAT", "GUARD", "pgd_normalized", "curvature_penalty"]
