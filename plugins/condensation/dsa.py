"""Differentiable Siamese Augmentation (DSA; Zhao & Bilen, ICML 2021).

The same randomly sampled transformation is applied to a real batch and a synthetic batch
("siamese"), and it is differentiable w.r.t. the synthetic pixels, so matching losses computed on
augmented views back-propagate into the synthetic images.

Transformation families (the strategy ``color_crop_cutout_flip_scale_rotate`` of DC/DSA/DM/MTT):

- ``color``: brightness ``x + (b - 0.5) * brightness``, saturation
  ``(x - mean_c) * (s * saturation) + mean_c`` (channel mean; a no-op on one channel) and contrast
  ``(x - mean) * (c + contrast) + mean`` (image mean), ``b, s, c ~ U[0, 1)``;
- ``crop``: integer translation by up to ``round(ratio_crop_pad * size)`` pixels, zero fill;
- ``cutout``: zero a square of side ``round(ratio_cutout * size)`` at a random position;
- ``flip``: horizontal flip with probability ``prob_flip``;
- ``scale``: independent x/y scaling by a factor in ``[1/ratio_scale, ratio_scale]``;
- ``rotate``: rotation by up to ``ratio_rotate`` degrees.

``aug_mode='S'`` (the originals' default) applies ONE family per call, chosen at random;
``'M'`` applies all of them in strategy order.

Parameters are sampled *per group* from an explicit ``torch.Generator`` (on the CPU, so the
random stream does not depend on the device) and applied to every image of the group:

- siamese use (matching, ``DiffAugment(..., seed=s)`` in the originals, batch mode): one group per
  class; the real and the synthetic images of class ``c`` both get group ``c``'s parameters,
  i.e. exactly the same transformation;
- plain training use (``seed=-1``): one group per image, one family for the whole batch.

Augmentation happens in normalised pixel space (``(x - mean) / std``), as in the originals,
whose datasets are normalised before augmentation (zero fill = the mean colour; the colour
magnitudes are in normalised units).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

FAMILIES = ("color", "crop", "cutout", "flip", "scale", "rotate")

DEFAULT_DSA_PARAMS: dict[str, Any] = {
    "aug_mode": "S",
    "prob_flip": 0.5,
    "ratio_scale": 1.2,
    "ratio_rotate": 15.0,
    "ratio_crop_pad": 0.125,
    "ratio_cutout": 0.5,
    "brightness": 1.0,
    "saturation": 2.0,
    "contrast": 0.5,
}
DEFAULT_DSA_STRATEGY = "color_crop_cutout_flip_scale_rotate"


@dataclass
class DSAParams:
    """Sampled transformation parameters, one row per group (CPU tensors)."""

    family: torch.Tensor  # [G] index into the strategy's families (-1: all, aug_mode 'M')
    values: dict[str, torch.Tensor]  # name -> [G]

    @property
    def num_groups(self) -> int:
        return int(self.family.shape[0])


class DSA:
    def __init__(self, strategy: str = DEFAULT_DSA_STRATEGY, params: dict[str, Any] | None = None) -> None:
        unknown = set(params or {}) - set(DEFAULT_DSA_PARAMS)
        if unknown:
            raise ValueError(f"unknown DSA parameter(s) {sorted(unknown)}; known: {sorted(DEFAULT_DSA_PARAMS)}")
        self.settings = {**DEFAULT_DSA_PARAMS, **(params or {})}
        if self.settings["aug_mode"] not in ("S", "M"):
            raise ValueError(f"DSA aug_mode must be 'S' or 'M', got {self.settings['aug_mode']!r}")
        strategy = (strategy or "none").strip()
        self.families: tuple[str, ...] = () if strategy.lower() == "none" else tuple(strategy.split("_"))
        bad = [f for f in self.families if f not in FAMILIES]
        if bad:
            raise ValueError(f"unknown DSA transformation(s) {bad}; known: {list(FAMILIES)}")

    @property
    def enabled(self) -> bool:
        return bool(self.families)

    # ------------------------------------------------------------------ sampling
    def sample(self, num_groups: int, size: tuple[int, int], generator: torch.Generator,
               shared_family: bool = False) -> DSAParams:
        """Parameters for ``num_groups`` groups of images of spatial ``size`` (H, W).

        ``shared_family``: one transformation family for all groups (the originals' per-call
        choice when every image has its own parameters)."""
        s = self.settings
        g, (h, w) = num_groups, size
        if not self.families:
            return DSAParams(torch.full((g,), -1, dtype=torch.long), {})
        if s["aug_mode"] == "M":
            family = torch.full((g,), -1, dtype=torch.long)
        elif shared_family:
            family = torch.randint(0, len(self.families), (1,), generator=generator).expand(g).clone()
        else:
            family = torch.randint(0, len(self.families), (g,), generator=generator)

        def rand() -> torch.Tensor:
            return torch.rand(g, generator=generator)

        shift_x, shift_y = int(h * s["ratio_crop_pad"] + 0.5), int(w * s["ratio_crop_pad"] + 0.5)
        cut_x, cut_y = int(h * s["ratio_cutout"] + 0.5), int(w * s["ratio_cutout"] + 0.5)
        r = s["ratio_scale"]
        values = {
            "brightness": rand(), "saturation": rand(), "contrast": rand(),
            "crop_x": torch.randint(-shift_x, shift_x + 1, (g,), generator=generator),
            "crop_y": torch.randint(-shift_y, shift_y + 1, (g,), generator=generator),
            "cutout_x": torch.randint(0, h + (1 - cut_x % 2), (g,), generator=generator),
            "cutout_y": torch.randint(0, w + (1 - cut_y % 2), (g,), generator=generator),
            "flip": rand(),
            "scale_x": rand() * (r - 1.0 / r) + 1.0 / r,
            "scale_y": rand() * (r - 1.0 / r) + 1.0 / r,
            "rotate": (rand() - 0.5) * 2 * s["ratio_rotate"] / 180 * math.pi,
        }
        return DSAParams(family, values)

    # ------------------------------------------------------------------ applying
    def apply(self, x: torch.Tensor, params: DSAParams, group: torch.Tensor | None = None) -> torch.Tensor:
        """Augment ``x`` [N, C, H, W]; image ``i`` uses the parameters of group ``group[i]``
        (default: image i -> group i). Differentiable w.r.t. ``x``."""
        if not self.families:
            return x
        n = x.shape[0]
        if group is None:
            group = torch.arange(n)
        group = group.to("cpu", torch.long)
        if group.shape != (n,) or (n and int(group.max()) >= params.num_groups):
            raise ValueError("DSA: group must give one valid group index per image")
        fam = params.family[group]
        for k, name in enumerate(self.families):
            active = (fam == -1) | (fam == k)
            if not bool(active.any()):
                continue
            idx = torch.nonzero(active).flatten()
            vals = {key: v[group[idx]].to(x.device) for key, v in params.values.items()}
            sub = x if idx.numel() == n else x.index_select(0, idx.to(x.device))
            out = getattr(self, f"_{name}")(sub, vals)
            x = out if idx.numel() == n else x.index_copy(0, idx.to(x.device), out)
        return x.contiguous()

    def __call__(self, x: torch.Tensor, params: DSAParams, group: torch.Tensor | None = None) -> torch.Tensor:
        return self.apply(x, params, group)

    # --- the transformations (x: [n, C, H, W], v: name -> [n] on x.device) ------------
    def _color(self, x: torch.Tensor, v: dict[str, torch.Tensor]) -> torch.Tensor:
        s = self.settings
        col = lambda t: t.to(x.dtype).view(-1, 1, 1, 1)
        x = x + (col(v["brightness"]) - 0.5) * s["brightness"]
        m = x.mean(dim=1, keepdim=True)
        x = (x - m) * (col(v["saturation"]) * s["saturation"]) + m
        m = x.mean(dim=(1, 2, 3), keepdim=True)
        return (x - m) * (col(v["contrast"]) + s["contrast"]) + m

    def _crop(self, x: torch.Tensor, v: dict[str, torch.Tensor]) -> torch.Tensor:
        n, c, h, w = x.shape
        xp = F.pad(x, [1, 1, 1, 1])  # zero ring; translations further out clamp onto it
        rows = torch.clamp(torch.arange(h, device=x.device)[None, :] + v["crop_x"][:, None] + 1, 0, h + 1)
        cols = torch.clamp(torch.arange(w, device=x.device)[None, :] + v["crop_y"][:, None] + 1, 0, w + 1)
        xp = xp.gather(2, rows[:, None, :, None].expand(n, c, h, w + 2))
        return xp.gather(3, cols[:, None, None, :].expand(n, c, h, w))

    def _cutout(self, x: torch.Tensor, v: dict[str, torch.Tensor]) -> torch.Tensor:
        h, w = x.shape[2:]
        s = self.settings
        ch, cw = int(h * s["ratio_cutout"] + 0.5), int(w * s["ratio_cutout"] + 0.5)
        r = torch.arange(h, device=x.device)[None, :]
        q = torch.arange(w, device=x.device)[None, :]
        r0 = (v["cutout_x"] - ch // 2)[:, None]
        q0 = (v["cutout_y"] - cw // 2)[:, None]
        in_r = (r >= r0) & (r <= r0 + ch - 1)
        in_q = (q >= q0) & (q <= q0 + cw - 1)
        keep = ~(in_r[:, :, None] & in_q[:, None, :])
        return x * keep[:, None].to(x.dtype)

    def _flip(self, x: torch.Tensor, v: dict[str, torch.Tensor]) -> torch.Tensor:
        return torch.where((v["flip"] < self.settings["prob_flip"]).view(-1, 1, 1, 1), x.flip(3), x)

    def _affine(self, x: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
        grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)

    def _scale(self, x: torch.Tensor, v: dict[str, torch.Tensor]) -> torch.Tensor:
        z = torch.zeros_like(v["scale_x"])
        theta = torch.stack([torch.stack([v["scale_x"], z, z], -1), torch.stack([z, v["scale_y"], z], -1)], 1)
        return self._affine(x, theta)

    def _rotate(self, x: torch.Tensor, v: dict[str, torch.Tensor]) -> torch.Tensor:
        t = v["rotate"]
        z = torch.zeros_like(t)
        theta = torch.stack([torch.stack([t.cos(), -t.sin(), z], -1), torch.stack([t.sin(), t.cos(), z], -1)], 1)
        return self._affine(x, theta)
