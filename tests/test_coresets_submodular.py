"""The one lazy greedy (``submodular.lazy_greedy``) that graph cut, SubMod-FL and CRAIG select with."""

import itertools

import pytest
import torch

from dcrobench_plugins.coresets.submodular import facility_location_lazy_greedy, lazy_greedy


def coverage_oracle(sets: list[set[int]], weights: torch.Tensor):
    """Weighted coverage ``f(S) = sum of the weights of the elements the chosen sets cover``."""
    calls = []

    def gains(rows: torch.Tensor, chosen: list[int]) -> torch.Tensor:
        covered = set().union(*(sets[j] for j in chosen)) if chosen else set()
        calls.append(rows.numel())
        return torch.tensor([float(sum(weights[e] for e in sets[r] - covered)) for r in rows.tolist()],
                            dtype=torch.float64)

    return gains, calls


def plain_greedy(sets, weights, k):
    chosen, covered = [], set()
    for _ in range(k):
        g = [float(sum(weights[e] for e in s - covered)) if i not in chosen else -1.0 for i, s in enumerate(sets)]
        j = max(range(len(sets)), key=lambda i: (g[i], -i))  # lower index on ties
        chosen.append(j)
        covered |= sets[j]
    return chosen


@pytest.mark.parametrize("seed,batch", itertools.product(range(4), (1, 3, 32)))
def test_lazy_greedy_returns_plain_greedys_choices_ties_to_the_lower_index(seed, batch):
    g = torch.Generator().manual_seed(seed)
    universe, n = 12, 15
    sets = [set(torch.nonzero(torch.rand(universe, generator=g) < 0.3).flatten().tolist()) for _ in range(n)]
    weights = torch.randint(1, 3, (universe,), generator=g).double()  # small integers: many exact ties
    gains, calls = coverage_oracle(sets, weights)
    picks = []
    chosen, picked_gains, evals = lazy_greedy(n, 6, gains, batch=batch, on_pick=lambda: picks.append(1))
    assert chosen == plain_greedy(sets, weights, 6)
    assert len(picks) == 6 and calls[0] == n and evals == sum(calls)
    assert all(c <= batch for c in calls[1:])
    assert picked_gains == sorted(picked_gains, reverse=True)  # diminishing returns


def test_lazy_greedy_bounds_and_facility_location_of_nothing():
    gains, _ = coverage_oracle([{0}, {1}], torch.ones(2, dtype=torch.float64))
    with pytest.raises(ValueError, match="cannot select 3 of 2"):
        lazy_greedy(2, 3, gains)
    idx, g = facility_location_lazy_greedy(torch.rand(4, 4), 0)
    assert idx.numel() == 0 and g.numel() == 0
