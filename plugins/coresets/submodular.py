"""Greedy maximisation of the facility-location function (shared by Craig and SubMod-FL).

Facility location over a similarity matrix ``sim[i, j]`` (ground element ``i``, candidate ``j``,
similarities >= 0):  ``F(S) = sum_i max_{j in S} sim[i, j]``  (``F(empty) = 0``).
It is monotone submodular, so the plain greedy algorithm is a (1 - 1/e)-approximation and the lazy
greedy algorithm (Minoux 1978) returns the same sequence of gains: a stale marginal gain is an
upper bound of the current one, so an element whose refreshed gain still tops the heap is the
greedy choice.

Both functions accept a rectangular ``sim [n_ground, n_candidates]`` and run on its device.
Ties are broken towards the lower candidate index in both versions.
"""

from __future__ import annotations

import heapq

import torch


def _check(sim: torch.Tensor, k: int) -> int:
    if sim.ndim != 2:
        raise ValueError(f"similarity matrix must be 2-D, got shape {tuple(sim.shape)}")
    m = sim.shape[1]
    if not 0 <= k <= m:
        raise ValueError(f"cannot select {k} of {m} candidates")
    if sim.numel() and float(sim.min()) < 0:
        raise ValueError("facility location needs non-negative similarities (shift them, e.g. max - distance)")
    return m


def facility_location_value(sim: torch.Tensor, selected) -> float:
    """``F(S) = sum_i max_{j in S} sim[i, j]`` (0 for the empty set)."""
    idx = torch.as_tensor(list(selected) if not torch.is_tensor(selected) else selected, dtype=torch.long,
                          device=sim.device)
    if idx.numel() == 0:
        return 0.0
    return float(sim[:, idx].max(dim=1).values.double().sum())


def facility_location_greedy(sim: torch.Tensor, k: int, *, progress: bool = False, desc: str = "greedy FL"
                             ) -> tuple[torch.Tensor, torch.Tensor]:
    """Plain greedy: every step evaluates all marginal gains at once. Returns ``(indices [k], gains [k])``."""
    m = _check(sim, k)
    sim = sim.double() if sim.dtype != torch.float64 else sim
    cur = torch.zeros(sim.shape[0], dtype=sim.dtype, device=sim.device)
    available = torch.ones(m, dtype=torch.bool, device=sim.device)
    chosen, gains = [], []
    steps = range(k)
    if progress:
        from tqdm.auto import tqdm

        steps = tqdm(steps, desc=desc, disable=None, leave=False)
    for _ in steps:
        g = (sim - cur[:, None]).clamp_min_(0.0).sum(0)
        g[~available] = -1.0
        j = int(torch.argmax(g))  # first maximum on ties
        chosen.append(j)
        gains.append(float(g[j]))
        available[j] = False
        cur = torch.maximum(cur, sim[:, j])
    return torch.tensor(chosen, dtype=torch.long), torch.tensor(gains, dtype=torch.float64)


def facility_location_lazy_greedy(sim: torch.Tensor, k: int, *, progress: bool = False, desc: str = "lazy greedy FL"
                                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """Lazy (accelerated) greedy with a max-heap of stale gains. Returns ``(indices [k], gains [k])``.

    The first round's gains are computed in one vectorised pass; afterwards only the heap's top is
    re-evaluated (an O(n) column operation) until its fresh gain still beats the next stale bound.
    """
    m = _check(sim, k)
    sim = sim.double() if sim.dtype != torch.float64 else sim
    n = sim.shape[0]
    cur = torch.zeros(n, dtype=sim.dtype, device=sim.device)
    first = sim.sum(0).cpu().tolist()
    heap = [(-g, j) for j, g in enumerate(first)]
    heapq.heapify(heap)
    chosen, gains = [], []
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=k, desc=desc, disable=None, leave=False)
    fresh_round = 0  # heap entries tagged with the round in which their gain was computed
    stamp = dict.fromkeys(range(m), 0)
    while len(chosen) < k:
        neg, j = heapq.heappop(heap)
        if stamp[j] == fresh_round:
            chosen.append(j)
            gains.append(-neg)
            cur = torch.maximum(cur, sim[:, j])
            fresh_round += 1
            if bar is not None:
                bar.update(1)
            continue
        g = float((sim[:, j] - cur).clamp_min(0.0).sum())
        stamp[j] = fresh_round
        # The refreshed gain is exact; push it back and let the heap decide (handles ties by index).
        heapq.heappush(heap, (-g, j))
    if bar is not None:
        bar.close()
    return torch.tensor(chosen, dtype=torch.long), torch.tensor(gains, dtype=torch.float64)


def nearest_assignment(sim: torch.Tensor, selected: torch.Tensor) -> torch.Tensor:
    """For every ground element, the position (in ``selected``) of its most similar selected candidate."""
    return sim[:, selected.to(sim.device)].argmax(dim=1).cpu()


__all__ = ["facility_location_value", "facility_location_greedy", "facility_location_lazy_greedy",
           "nearest_assignment"]
