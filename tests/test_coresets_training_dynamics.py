"""Forgetting (Toneva et al. 2019): forgetting events from the proxy's training trace."""

import math

import torch

from dcrobench_plugins.coresets import training_dynamics as td
from tests.test_coresets_gradient import CPU, PROXY, tiny_set


def test_forgetting_counts_match_hand_built_trace():
    trace = torch.tensor([  # rows = presentations (epochs), columns = examples
        [1, 1, 0, 0, 1, 0],
        [1, 0, 0, 1, 0, 1],
        [1, 1, 0, 0, 0, 1],
        [1, 0, 0, 0, 0, 1],
        [1, 1, 0, 1, 0, 0],
    ], dtype=torch.bool)
    expected = torch.tensor([0, 2, math.inf, 1, 1, 1], dtype=torch.float64)
    assert torch.equal(td.forgetting_counts(trace), expected)


def test_forgetting_keeps_most_forgotten_per_class_ties_by_seed(monkeypatch):
    data = tiny_set(n_per_class=6, classes=2)
    # counts per example: class 0 -> [0, 3, inf, 1, 1, 1]; class 1 -> [2, 0, 0, 0, 0, 5]
    counts = [0, 3, math.inf, 1, 1, 1, 2, 0, 0, 0, 0, 5]
    length = 12

    def column(k):  # k forgetting events (1 -> 0 transitions); inf = never correct
        if k == math.inf:
            return [0] * length
        return [1, 0] * k + [1] * (length - 2 * k)

    trace = torch.tensor([column(k) for k in counts], dtype=torch.bool).T
    assert td.forgetting_counts(trace).tolist() == [float(c) for c in counts]
    monkeypatch.setattr(td, "train_proxy_with_trace", lambda *a, **k: (None, trace))
    method = td.Forgetting(proxy=PROXY)
    picks = {s: set(method.run(data, 3, s, CPU).indices.tolist()) for s in range(6)}
    for s, p in picks.items():
        assert {2, 1} <= p and len(p & {3, 4, 5}) == 1    # inf, 3, then one of the tied 1s
        assert {11, 6} <= p and len(p & {7, 8, 9, 10}) == 1
    assert len({frozenset(p) for p in picks.values()}) > 1  # ties broken differently by seed
    assert picks[0] == set(method.run(data, 3, 0, CPU).indices.tolist())
