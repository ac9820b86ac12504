"""DM: dataset condensation with distribution matching (Zhao & Bilen, WACV 2023).

Every iteration samples a freshly initialised ConvNet, freezes it, and uses its penultimate
features ``psi`` as embedding. For every class ``c`` a random real batch (``batch_real`` images)
and the class's synthetic images get the same DSA transformation, and the loss

    L = sum_c || mean_i psi(A(x_real_ci)) - mean_j psi(A(s_cj)) ||^2

(real embeddings detached) is minimised w.r.t. the synthetic images with SGD (momentum 0.5).
Defaults are the paper's: 20,000 iterations, lr_img 1.0, batch_real 256, real initialisation,
ConvNet-128x3 with instance norm, DSA ``color_crop_cutout_flip_scale_rotate``.
All classes are embedded in one batched forward pass; per-class means use ``index_add``.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn

from .common import (
    COMMON_DEFAULTS,
    CondensationMethod,
    Context,
    build_net,
    draw_seed,
    seeded_generator,
    sgd_step,
)


def class_means(emb: torch.Tensor, group: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Mean embedding per class: [num_classes, D] (classes without images give 0)."""
    group = group.to(emb.device)
    sums = torch.zeros(num_classes, emb.shape[1], device=emb.device, dtype=emb.dtype).index_add(0, group, emb)
    counts = torch.bincount(group, minlength=num_classes).clamp_min(1).to(emb.dtype)
    return sums / counts[:, None]


def embed_chunked(features: nn.Module, x: torch.Tensor, chunk: int = 4096) -> torch.Tensor:
    return torch.cat([features(x[s:s + chunk]) for s in range(0, x.shape[0], chunk)])


def siamese_batch(ctx: Context, batch_real: int, gen: torch.Generator
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(real, real_group, syn, syn_group)``: ``batch_real`` real images per class and the synthetic set,
    class ``c``'s real and synthetic images under one DSA transformation (siamese augmentation)."""
    idx, real_group = ctx.sample_real(batch_real, gen)
    real = ctx.real[idx.to(ctx.device)]
    syn, syn_group = ctx.z, ctx.scratch["syn_group"]
    if ctx.dsa.enabled:
        aug = ctx.dsa.sample(ctx.num_classes, tuple(real.shape[2:]), gen)
        real = ctx.dsa(real, aug, real_group)
        syn = ctx.dsa(syn, aug, syn_group)
    return real, real_group, syn, syn_group


def dm_loss(features: nn.Module, real: torch.Tensor, real_group: torch.Tensor, syn: torch.Tensor,
            syn_group: torch.Tensor, num_classes: int) -> torch.Tensor:
    """sum over classes of the squared distance between mean real and mean synthetic embeddings."""
    with torch.no_grad():
        mu_real = class_means(embed_chunked(features, real), real_group, num_classes)
    mu_syn = class_means(features(syn), syn_group, num_classes)
    return ((mu_real - mu_syn) ** 2).sum()


class DM(CondensationMethod):
    name = "dm"
    version = "1"
    description = ("distribution matching (Zhao & Bilen 2023): match per-class mean embeddings of "
                   "randomly initialised ConvNets, with DSA")
    default_params: ClassVar[dict[str, Any]] = {
        **COMMON_DEFAULTS,
        "iterations": 20000,
        "lr_img": 1.0,
        "momentum_img": 0.5,
        "batch_real": 256,
        "checkpoint_every": 500,
    }

    def setup(self, ctx: Context) -> None:
        ctx.optimizers["img"] = torch.optim.SGD([ctx.z], lr=float(self.params["lr_img"]),
                                                momentum=float(self.params["momentum_img"]))
        ctx.scratch["syn_group"] = torch.arange(ctx.num_classes).repeat_interleave(ctx.budget)

    def step(self, ctx: Context, it: int) -> float:
        gen = seeded_generator(self.name, ctx.seed, it)
        net = build_net(ctx, draw_seed(gen))
        net.train()
        for prm in net.parameters():
            prm.requires_grad_(False)
        real, real_group, syn, syn_group = siamese_batch(ctx, int(self.params["batch_real"]), gen)
        loss = dm_loss(net.features, real, real_group, syn, syn_group, ctx.num_classes)
        sgd_step(ctx, loss)
        return float(loss.detach())

    def extra_meta(self, ctx: Context) -> dict:
        return {"matching": "sum_c ||mean psi(real_c) - mean psi(syn_c)||^2, fresh random ConvNet per iteration"}
