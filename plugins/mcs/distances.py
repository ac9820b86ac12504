"""Pairwise distances for MCS: batched torch, float64, memory bounded by row blocks.

Points are flattened pixel vectors. ``l2`` uses the Gram identity in float64 (BLAS speed) and
recomputes near-zero entries by direct differences, where the identity loses precision
(cancellation); ``l1`` and ``linf`` use ``torch.cdist`` directly. Everything runs on the device
of the points (GPU when given), results come back as float64 numpy arrays.
"""

from __future__ import annotations

import numpy as np
import torch

METRICS = ("l2", "linf", "l1")

#: entries per block of the output / temporary (float64: 8 bytes each) -> ~128 MiB per block.
_BLOCK_ELEMS = 1 << 24


def check_metric(metric: str) -> str:
    m = str(metric).lower().replace("_", "")
    aliases = {"l2": "l2", "2": "l2", "linf": "linf", "inf": "linf", "l1": "l1", "1": "l1"}
    if m not in aliases:
        raise ValueError(f"unknown MCS metric '{metric}'; choose one of {', '.join(METRICS)}")
    return aliases[m]


def as_points(x: torch.Tensor, device: torch.device | str | None = None) -> torch.Tensor:
    """Flatten ``[N, ...]`` to a contiguous float64 ``[N, D]`` tensor on ``device``."""
    x = x.detach().reshape(x.shape[0], -1)
    if device is not None:
        x = x.to(device)
    return x.to(torch.float64).contiguous()


class DistanceOracle:
    """Distances between rows of a fixed point matrix ``X`` [N, D] (float64) under one metric."""

    def __init__(self, x: torch.Tensor, metric: str = "l2") -> None:
        self.metric = check_metric(metric)
        self.x = x if x.dtype == torch.float64 and x.ndim == 2 else as_points(x, x.device)
        self.n, self.dim = self.x.shape
        self.sqnorm = (self.x * self.x).sum(1) if self.metric == "l2" else None
        self.evaluations = 0  # number of distance entries computed (for stats)

    def _block(self, rows: torch.Tensor) -> torch.Tensor:
        """Distances from the points ``rows`` (index tensor) to all N points, float64 on device."""
        xr = self.x[rows]
        if self.metric == "l2":
            sq = self.sqnorm[rows, None] + self.sqnorm[None, :] - 2.0 * (xr @ self.x.T)
            sq.clamp_(min=0.0)
            # Cancellation: where sq is tiny relative to the norms, recompute exactly.
            scale = self.sqnorm[rows, None] + self.sqnorm[None, :]
            bad = sq <= 1e-6 * scale
            if bad.any():
                bi, bj = torch.nonzero(bad, as_tuple=True)
                diff = xr[bi] - self.x[bj]
                sq[bi, bj] = (diff * diff).sum(1)
            return sq.sqrt_()
        p = 1.0 if self.metric == "l1" else float("inf")
        return torch.cdist(xr.unsqueeze(0), self.x.unsqueeze(0), p=p).squeeze(0)

    def rows(self, idx) -> np.ndarray:
        """``D[idx, :]`` as a float64 numpy array of shape [len(idx), N]."""
        idx = torch.as_tensor(np.asarray(idx, dtype=np.int64), device=self.x.device)
        out = np.empty((idx.numel(), self.n), dtype=np.float64)
        if idx.numel() == 0:
            return out
        per = max(1, _BLOCK_ELEMS // max(self.n, 1))  # rows per block: memory stays bounded for every metric
        for s in range(0, idx.numel(), per):
            out[s:s + per] = self._block(idx[s:s + per]).cpu().numpy()
        self.evaluations += idx.numel() * self.n
        return out

    def full(self) -> np.ndarray:
        """The whole matrix, exactly symmetric (the two float paths may differ in the last bit)."""
        d = self.rows(np.arange(self.n))
        return np.minimum(d, d.T)


def pairwise(x: torch.Tensor, y: torch.Tensor, metric: str = "l2") -> np.ndarray:
    """Distances between two point sets (flattened), float64 numpy [len(x), len(y)], in blocks."""
    metric = check_metric(metric)
    x = as_points(x)
    y = as_points(y, x.device)
    out = np.empty((x.shape[0], y.shape[0]), dtype=np.float64)
    if x.shape[0] == 0 or y.shape[0] == 0:
        return out
    per = max(1, _BLOCK_ELEMS // max(y.shape[0], 1))
    p = {"l2": 2.0, "l1": 1.0, "linf": float("inf")}[metric]
    for s in range(0, x.shape[0], per):
        xb = x[s:s + per]
        if metric == "l2":
            # direct differences (exact) for small blocks; Gram otherwise, with near-zero recheck
            d = torch.cdist(xb.unsqueeze(0), y.unsqueeze(0), p=2.0,
                            compute_mode="use_mm_for_euclid_dist").squeeze(0)
            small = d <= 1e-3 * (xb.norm(dim=1)[:, None] + y.norm(dim=1)[None, :])
            if small.any():
                bi, bj = torch.nonzero(small, as_tuple=True)
                d[bi, bj] = (xb[bi] - y[bj]).norm(dim=1)
        else:
            d = torch.cdist(xb.unsqueeze(0), y.unsqueeze(0), p=p).squeeze(0)
        out[s:s + per] = d.cpu().numpy()
    return out


def norm_ratio(from_norm: str, to_metric: str, dim: int) -> float:
    """Smallest c with ||v||_to <= c * ||v||_from for all v in R^dim (l1/l2/linf)."""
    inv = {"l1": 1.0, "l2": 0.5, "linf": 0.0}
    a, b = inv[check_metric(from_norm)], inv[check_metric(to_metric)]
    return float(dim) ** max(0.0, b - a)
