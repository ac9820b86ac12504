"""Uncertainty of a leaderboard cell and the paired comparison of a method with Random.

Interval: a two-level bootstrap over seeds and test points. A resample draws the cell's seeds with
replacement and, within each drawn seed, its test points with replacement; the mean accuracy of a
seed's resampled points is then Binomial(n, acc) / n exactly, so the bootstrap draws those counts
instead of indexing the points (same distribution, no N-sized arrays). The 95% interval is the
2.5 and 97.5 percentiles of the resampled cell means. A single-seed cell's interval reflects its
test points only, and it says n = 1.

Comparison: the method's and Random's cells at the same (protocol name and version, dataset, model,
norm, budget) are paired seed by seed on the same test points (same seed number and the same test
fingerprint in both records). The discordant points are pooled over the matched seeds and tested
with the exact McNemar test (two-sided binomial test of the discordant counts at 1/2).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

#: resamples and generator seed of the published intervals (fixed: the tables are reproducible)
RESAMPLES = 2000
BOOTSTRAP_SEED = 0
ALPHA = 0.05


@dataclass(frozen=True)
class Interval:
    """A cell's accuracy: mean over seeds, the interval's bounds, the number of seeds."""

    mean: float
    low: float
    high: float
    n: int


def bootstrap_interval(accuracies: Sequence[float], points: Sequence[int | None], *, resamples: int = RESAMPLES,
                       seed: int = BOOTSTRAP_SEED, alpha: float = ALPHA) -> Interval:
    """The (1 - alpha) interval of the mean of per-seed ``accuracies`` measured on ``points[i]`` test points
    each (None: unknown, then only the seeds are resampled)."""
    acc = np.asarray(accuracies, dtype=float)
    if acc.size == 0:
        raise ValueError("an interval needs at least one seed")
    rng = np.random.default_rng(seed)
    seeds = rng.integers(0, acc.size, size=(resamples, acc.size))
    drawn = acc[seeds]
    if all(p is not None and p > 0 for p in points):
        n = np.asarray(points, dtype=np.int64)[seeds]
        drawn = rng.binomial(n, drawn) / n
    means = drawn.mean(axis=1)
    low, high = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    return Interval(float(acc.mean()), float(low), float(high), int(acc.size))


@dataclass(frozen=True)
class Comparison:
    """A method against Random on the same test points: mean difference, McNemar's p, the verdict."""

    delta: float  # mean over the matched seeds of (method - random) accuracy
    p_value: float | None  # None: no matched test points
    verdict: str  # "better" | "worse" | "not distinguishable" | "n/a"
    seeds: int  # matched seeds
    wins: int  # points the method gets right and Random wrong, pooled over the matched seeds
    losses: int  # the reverse


def mcnemar_exact(wins: int, losses: int) -> float:
    """Two-sided exact McNemar p-value of ``wins`` against ``losses`` discordant pairs."""
    from scipy.stats import binomtest

    n = wins + losses
    return 1.0 if n == 0 else float(binomtest(wins, n, 0.5).pvalue)


def compare_flags(method: Sequence[np.ndarray], random: Sequence[np.ndarray], alpha: float = ALPHA) -> Comparison:
    """Pooled exact McNemar test over matched seeds; ``method[i]`` and ``random[i]`` are the per-point
    correctness flags of one seed on the same test points."""
    if len(method) != len(random):
        raise ValueError("flags must be matched seed by seed")
    if not method:
        return Comparison(math.nan, None, "n/a", 0, 0, 0)
    wins = losses = 0
    deltas = []
    for m, r in zip(method, random):
        m, r = np.asarray(m, dtype=bool), np.asarray(r, dtype=bool)
        if m.shape != r.shape:
            raise ValueError(f"flags of one seed cover different points: {m.shape} vs {r.shape}")
        wins += int((m & ~r).sum())
        losses += int((~m & r).sum())
        deltas.append(float(m.mean() - r.mean()))
    p = mcnemar_exact(wins, losses)
    delta = float(np.mean(deltas))
    verdict = "not distinguishable" if p >= alpha else ("better" if wins > losses else "worse")
    return Comparison(delta, p, verdict, len(method), wins, losses)


MARKERS = {"better": "▲", "worse": "▼", "not distinguishable": "·", "n/a": ""}

__all__ = ["ALPHA", "BOOTSTRAP_SEED", "Comparison", "Interval", "MARKERS", "RESAMPLES", "bootstrap_interval",
           "compare_flags", "mcnemar_exact"]
