"""Greedy maximisation of submodular set functions: the one lazy greedy, and facility location.

``lazy_greedy`` (Minoux 1978) maximises any submodular function given its marginal-gain oracle: a
stale marginal gain is an upper bound of the current one, so an element whose refreshed gain still
tops the heap is the greedy choice, and lazy greedy returns plain greedy's sequence of choices
(ties towards the lower index). Graph cut (``geometric_methods.graph_cut_lazy_greedy``), SubMod-FL
and CRAIG all select with it.

Facility location over a similarity matrix ``sim[i, j]`` (ground element ``i``, candidate ``j``,
similarities >= 0):  ``F(S) = sum_i max_{j in S} sim[i, j]``  (``F(empty) = 0``).
It is monotone submodular, so the plain greedy algorithm is a (1 - 1/e)-approximation.

Both facility-location functions accept a rectangular ``sim [n_ground, n_candidates]`` and run on
its device. Ties are broken towards the lower candidate index in both versions.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable

import torch

from dcrobench.progress import bar


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


def facility_location_greedy(sim: torch.Tensor, k: int, *, progress: bool | None = False, desc: str = "greedy FL"
                             ) -> tuple[torch.Tensor, torch.Tensor]:
    """Plain greedy: every step evaluates all marginal gains at once. Returns ``(indices [k], gains [k])``."""
    m = _check(sim, k)
    sim = sim.double() if sim.dtype != torch.float64 else sim
    cur = torch.zeros(sim.shape[0], dtype=sim.dtype, device=sim.device)
    available = torch.ones(m, dtype=torch.bool, device=sim.device)
    chosen, gains = [], []
    for _ in bar(range(k), desc=desc, enabled=progress):
        g = (sim - cur[:, None]).clamp_min_(0.0).sum(0)
        g[~available] = -1.0
        j = int(torch.argmax(g))  # first maximum on ties
        chosen.append(j)
        gains.append(float(g[j]))
        available[j] = False
        cur = torch.maximum(cur, sim[:, j])
    return torch.tensor(chosen, dtype=torch.long), torch.tensor(gains, dtype=torch.float64)


def lazy_greedy(n: int, k: int, gains: Callable[[torch.Tensor, list[int]], torch.Tensor], *, batch: int = 32,
                on_pick: Callable[[], object] | None = None) -> tuple[list[int], list[float], int]:
    """Lazy greedy (Minoux 1978) for a submodular set function given its marginal-gain oracle.

    ``gains(rows, chosen)`` returns the exact marginal gains of the candidate ``rows`` (a CPU long
    tensor) given the rows chosen so far, in order; it is first called once with every row and
    nothing chosen. A max-heap holds each candidate's last computed gain, an upper bound of its
    current gain by submodularity. The top is taken once its bound is fresh (computed after the
    last addition); otherwise up to ``batch`` stale entries are re-evaluated in one oracle call.
    Ties go to the lower index. ``on_pick()`` is called after every choice. Returns (chosen rows in
    order, the gain of each choice, number of gains evaluated).
    """
    if not 0 <= k <= n:
        raise ValueError(f"cannot select {k} of {n} candidates")
    first = gains(torch.arange(n), []).double().cpu().tolist()
    evals = n
    heap = [(-g, i, 0) for i, g in enumerate(first)]  # (-bound, row, round it was computed in)
    heapq.heapify(heap)
    chosen: list[int] = []
    picked_gains: list[float] = []
    for rnd in range(k):
        while True:
            neg, row, when = heap[0]
            if when == rnd:  # fresh bound on top: exact gain >= every other upper bound
                heapq.heappop(heap)
                chosen.append(row)
                picked_gains.append(-neg)
                break
            stale, fresh = [], []
            while heap and len(stale) < batch:
                item = heapq.heappop(heap)
                (fresh if item[2] == rnd else stale).append(item)
            rows = torch.tensor([it[1] for it in stale], dtype=torch.long)
            new = gains(rows, chosen).double().cpu().tolist()
            evals += len(stale)
            for g, it in zip(new, stale):
                heapq.heappush(heap, (-g, it[1], rnd))
            for it in fresh:
                heapq.heappush(heap, it)
        if on_pick is not None:
            on_pick()
    return chosen, picked_gains, evals


class _FacilityLocationGains:
    """The marginal-gain oracle of facility location over ``sim`` for ``lazy_greedy``.

    With nothing chosen every gain is a column sum (``sim >= 0``), computed in one vectorised pass;
    afterwards each candidate's gain is one O(n) column operation against the running maximum.
    """

    def __init__(self, sim: torch.Tensor) -> None:
        self.sim = sim
        self.cur = torch.zeros(sim.shape[0], dtype=sim.dtype, device=sim.device)  # max_{j in S} sim[:, j]
        self.included = 0  # how many chosen rows ``cur`` covers

    def __call__(self, rows: torch.Tensor, chosen: list[int]) -> torch.Tensor:
        if not chosen:
            return self.sim.sum(0)[rows.to(self.sim.device)]
        for j in chosen[self.included:]:
            self.cur = torch.maximum(self.cur, self.sim[:, j])
        self.included = len(chosen)
        return torch.stack([(self.sim[:, j] - self.cur).clamp_min(0.0).sum() for j in rows.tolist()])


def facility_location_lazy_greedy(sim: torch.Tensor, k: int, *, progress: bool | None = False,
                                  desc: str = "lazy greedy FL") -> tuple[torch.Tensor, torch.Tensor]:
    """Lazy greedy facility location (``lazy_greedy``, one stale gain refreshed at a time).

    Returns ``(indices [k], gains [k])``; ``progress`` as in ``dcrobench.progress.bar``.
    """
    m = _check(sim, k)
    sim = sim.double() if sim.dtype != torch.float64 else sim
    pbar = bar(total=k, desc=desc, enabled=progress)
    try:
        chosen, gains, _evals = lazy_greedy(m, k, _FacilityLocationGains(sim), batch=1,
                                            on_pick=lambda: pbar.update(1))
    finally:
        pbar.close()
    return torch.tensor(chosen, dtype=torch.long), torch.tensor(gains, dtype=torch.float64)


def nearest_assignment(sim: torch.Tensor, selected: torch.Tensor) -> torch.Tensor:
    """For every ground element, the position (in ``selected``) of its most similar selected candidate."""
    return sim[:, selected.to(sim.device)].argmax(dim=1).cpu()


__all__ = ["lazy_greedy", "facility_location_value", "facility_location_greedy", "facility_location_lazy_greedy",
           "nearest_assignment"]
