"""GM: dataset condensation with gradient matching (DC; Zhao, Mopuri & Bilen, ICLR 2021),
with differentiable siamese augmentation (DSA; Zhao & Bilen 2021).

Algorithm (the originals' loop names):

    for it in range(iterations):                  # K random network initialisations
        theta <- fresh ConvNet;  opt_net = SGD(theta, lr_net, momentum 0.5)
        for ol in range(outer_loop):               # T matching steps on this network
            L = sum_c D( grad_theta CE(theta; A(real_c)), grad_theta CE(theta; A(syn_c)) )
            syn <- syn - lr_img * dL/dsyn          # SGD, momentum 0.5
            if ol < outer_loop - 1:
                inner_loop epochs of SGD on theta over the synthetic set (with DSA)

with ``A`` the same DSA transformation for class c's real and synthetic batch, and D the
layer-wise distance of the paper: for a layer's gradient reshaped to [out, in*k*k],
``sum_i (1 - cos(G_real[i], G_syn[i]))`` (output-node-wise cosine), summed over layers; bias and
normalisation parameters (1-d) are ignored. ``outer_loop``/``inner_loop`` default to the
originals' per-IPC table (IPC 1: 1/1, 10: 10/50, 20: 20/25, 30: 30/20, 40: 40/15, 50: 50/10; other
budgets take the row of the largest IPC below). The rest of the defaults are the originals'
(1000 iterations, lr_img 0.1 and lr_net 0.01 with momentum 0.5, batch_real 256, batch_train 256).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from dcrobench.errors import MethodError

from .common import (
    COMMON_DEFAULTS,
    CondensationMethod,
    Context,
    body,
    build_net,
    draw_seed,
    seeded_generator,
    sgd_step,
    train_epoch,
)

#: the originals' (outer_loop, inner_loop) per images-per-class
LOOPS = {1: (1, 1), 10: (10, 50), 20: (20, 25), 30: (30, 20), 40: (40, 15), 50: (50, 10)}


def default_loops(budget: int) -> tuple[int, int]:
    if budget in LOOPS:
        return LOOPS[budget]
    below = [k for k in LOOPS if k <= budget]
    return LOOPS[max(below)] if below else LOOPS[1]


def layer_distance(g_real: torch.Tensor, g_syn: torch.Tensor) -> torch.Tensor:
    """The DC paper's distance for one layer: sum over output nodes of 1 - cosine similarity."""
    if g_real.ndim == 1:  # bias, normalisation affine parameters: ignored by the paper's metric
        return g_syn.new_zeros(())
    gr = g_real.reshape(g_real.shape[0], -1)
    gs = g_syn.reshape(g_syn.shape[0], -1)
    cos = (gr * gs).sum(-1) / (gr.norm(dim=-1) * gs.norm(dim=-1) + 1e-6)
    return (1.0 - cos).sum()


def match_distance(g_real: Sequence[torch.Tensor], g_syn: Sequence[torch.Tensor]) -> torch.Tensor:
    return torch.stack([layer_distance(r, s) for r, s in zip(g_real, g_syn)]).sum()


def class_gradient_distance(model: nn.Module, real: torch.Tensor, real_group: torch.Tensor, syn: torch.Tensor,
                            syn_group: torch.Tensor, num_classes: int, create_graph: bool = True) -> torch.Tensor:
    """sum_c D(grad CE on class c's real images, grad CE on class c's synthetic images)."""
    params = [p for p in model.parameters()]
    real_group = real_group.to(real.device)
    syn_group = syn_group.to(syn.device)
    total = syn.new_zeros(())
    for c in range(num_classes):
        xr, xs = real[real_group == c], syn[syn_group == c]
        if xr.shape[0] == 0 or xs.shape[0] == 0:
            continue
        yr = torch.full((xr.shape[0],), c, dtype=torch.long, device=real.device)
        ys = torch.full((xs.shape[0],), c, dtype=torch.long, device=syn.device)
        gr = [g.detach() for g in torch.autograd.grad(F.cross_entropy(model(xr), yr), params)]
        gs = torch.autograd.grad(F.cross_entropy(model(xs), ys), params, create_graph=create_graph)
        total = total + match_distance(gr, gs)
    return total


def _freeze_batchnorm_on_real(ctx: Context, model: nn.Module, gen: torch.Generator) -> None:
    """The originals' BatchNorm trick: statistics from 16 real images per class, then frozen."""
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not bns:
        return
    idx, _ = ctx.sample_real(16, gen)
    model.train()
    with torch.no_grad():
        model(ctx.real[idx.to(ctx.device)])
    for m in bns:
        m.eval()


class GM(CondensationMethod):
    name = "gm"
    version = "1"
    description = ("gradient matching (DC, Zhao et al. 2021) with DSA: match per-class network gradients "
                   "on real and synthetic batches over many random initialisations")
    default_params: ClassVar[dict[str, Any]] = {
        **COMMON_DEFAULTS,
        "iterations": 1000,       # random network initialisations
        "outer_loop": None,       # matching steps per initialisation (None: originals' per-IPC table)
        "inner_loop": None,       # network epochs on the synthetic set between matching steps
        "lr_img": 0.1,
        "momentum_img": 0.5,
        "lr_net": 0.01,
        "momentum_net": 0.5,
        "batch_real": 256,
        "batch_train": 256,
        "checkpoint_every": 10,
    }

    def loops(self, budget: int) -> tuple[int, int]:
        outer, inner = default_loops(budget)
        if self.params["outer_loop"] is not None:
            outer = int(self.params["outer_loop"])
        if self.params["inner_loop"] is not None:
            inner = int(self.params["inner_loop"])
        if outer < 1 or inner < 0:
            raise MethodError("gm: outer_loop must be >= 1 and inner_loop >= 0")
        return outer, inner

    def setup(self, ctx: Context) -> None:
        ctx.optimizers["img"] = torch.optim.SGD([ctx.z], lr=float(self.params["lr_img"]),
                                                momentum=float(self.params["momentum_img"]))
        ctx.scratch["syn_group"] = torch.arange(ctx.num_classes).repeat_interleave(ctx.budget)
        ctx.scratch["loops"] = self.loops(ctx.budget)

    def step(self, ctx: Context, it: int) -> float:
        p = self.params
        outer, inner = ctx.scratch["loops"]
        gen = seeded_generator(self.name, ctx.seed, it)
        net = build_net(ctx, draw_seed(gen))
        model = body(net)
        model.train()
        opt_net = torch.optim.SGD(model.parameters(), lr=float(p["lr_net"]), momentum=float(p["momentum_net"]))
        syn_group = ctx.scratch["syn_group"]
        total = 0.0
        for ol in range(outer):
            _freeze_batchnorm_on_real(ctx, model, gen)
            idx, real_group = ctx.sample_real(int(p["batch_real"]), gen)
            real, syn = ctx.real[idx.to(ctx.device)], ctx.z
            if ctx.dsa.enabled:  # siamese: one transformation per class, shared by real and synthetic
                aug = ctx.dsa.sample(ctx.num_classes, tuple(real.shape[2:]), gen)
                real = ctx.dsa(real, aug, real_group)
                syn = ctx.dsa(syn, aug, syn_group)
            loss = class_gradient_distance(model, real, real_group, syn, syn_group, ctx.num_classes)
            sgd_step(ctx, loss)
            total += float(loss.detach())
            if ol == outer - 1:
                break
            model.train()
            x_syn, y_syn = ctx.z.detach().clone(), ctx.syn_labels
            for _ in range(inner):
                train_epoch(ctx, model, opt_net, x_syn, y_syn, int(p["batch_train"]), gen)
        return total / (ctx.num_classes * outer)

    def extra_meta(self, ctx: Context) -> dict:
        outer, inner = ctx.scratch["loops"]
        return {"outer_loop": outer, "inner_loop": inner,
                "matching": "per-class layer-wise sum of (1 - cos) of CE gradients (DC paper distance)"}


def gradient_distance(data, images: torch.Tensor, labels: torch.Tensor, seeds: Sequence[int], width: int = 128,
                      depth: int = 3, norm: str = "instancenorm") -> float:
    """Diagnostic: mean over fixed random ConvNets (``seeds``) of the per-class gradient distance
    between ALL real images and the given synthetic images (pixels in [0, 1]), no augmentation."""
    from dcrobench_plugins.models import build_convnet

    from .common import STD_FLOOR

    mean, std = data.channel_stats(floor=STD_FLOOR)
    m = torch.tensor(mean).view(1, -1, 1, 1)
    s = torch.tensor(std).view(1, -1, 1, 1)
    out = []
    for seed in seeds:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            net = build_convnet(data.images.shape[1], data.images.shape[2], data.num_classes, mean, std,
                                width=width, depth=depth, norm=norm)
        model = body(net)
        d = class_gradient_distance(model, (data.images - m) / s, data.labels, (images - m) / s, labels,
                                    data.num_classes, create_graph=False)
        out.append(float(d))
    return sum(out) / len(out)
