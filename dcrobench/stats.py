"""Uncertainty of a leaderboard cell and the paired comparison of a method with Random.

Estimate: the mean over seeds, the sample std over seeds (ddof=1; none for one seed) and a 95% interval
from a two-level bootstrap over seeds and test points. A resample draws the cell's seeds with replacement
and, within each drawn seed, its test points with replacement. Resampling n points of a seed whose flags
hold a fraction ``acc`` of correct ones gives a mean distributed exactly as Binomial(n, acc) / n, so the
bootstrap draws those counts instead of indexing the flags (same distribution, no n-sized arrays). The
interval is the 2.5 and 97.5 percentiles of the resampled cell means; a single seed's interval comes from
its test points only.

Comparison: the method's and Random's cells at the same (protocol name and version, dataset, model, norm,
budget) are paired seed by seed on the same test points (same seed number and the same test fingerprint in
both records). The discordant points are pooled over the matched seeds and tested with the exact McNemar
test (two-sided binomial test of the discordant counts at 1/2).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

#: resamples and generator seed of the published intervals (fixed: the tables are reproducible)
RESAMPLES = 2000
BOOTSTRAP_SEED = 0
ALPHA = 0.05


@dataclass(frozen=True)
class Estimate:
    """A cell's accuracy: mean over seeds, sample std over seeds (None for one seed), the (1 - alpha)
    interval (None where nothing can be resampled: one seed, test points unknown) and the number of seeds."""

    mean: float
    std: float | None
    low: float | None
    high: float | None
    n: int


def estimate_text(e: Estimate) -> str:
    """``mean ± std [low, high] n=k`` in % (no ``± std`` for one seed, no interval where none can be drawn)."""
    spread = "" if e.std is None else f" ± {100 * e.std:.2f}"
    interval = "" if e.low is None else f" [{100 * e.low:.1f}, {100 * e.high:.1f}]"
    return f"{100 * e.mean:.2f}{spread}{interval} n={e.n}"


def sample_std(values: Sequence[float]) -> float | None:
    """Standard deviation with ddof=1; None for fewer than two values (no spread to estimate)."""
    return statistics.stdev(values) if len(values) > 1 else None


def bootstrap_estimate(accuracies: Sequence[float], points: Sequence[int | None], *, resamples: int = RESAMPLES,
                       seed: int = BOOTSTRAP_SEED, alpha: float = ALPHA) -> Estimate:
    """Mean, sample std and (1 - alpha) bootstrap interval of per-seed ``accuracies`` measured on ``points[i]``
    test points each (None: unknown, then only the seeds are resampled)."""
    acc = np.asarray(accuracies, dtype=float)
    if acc.size == 0:
        raise ValueError("an estimate needs at least one seed")
    std = sample_std([float(a) for a in acc])
    points_known = all(p is not None and p > 0 for p in points)
    if acc.size == 1 and not points_known:
        return Estimate(float(acc[0]), None, None, None, 1)
    rng = np.random.default_rng(seed)
    seeds = rng.integers(0, acc.size, size=(resamples, acc.size))
    drawn = acc[seeds]
    if points_known:
        n = np.asarray(points, dtype=np.int64)[seeds]
        drawn = rng.binomial(n, drawn) / n
    low, high = np.quantile(drawn.mean(axis=1), [alpha / 2, 1 - alpha / 2])
    return Estimate(float(acc.mean()), std, float(low), float(high), int(acc.size))


@dataclass(frozen=True)
class Comparison:
    """A method against Random: difference of accuracy, McNemar's p on the same test points, the verdict."""

    delta: float  # method - random: mean over the matched seeds (over all seeds of each cell where none match)
    p_value: float | None  # None: no matched test points, no test
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
    correctness flags of one seed on the same test points. No seeds: verdict "n/a", delta nan."""
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
    verdict = "not distinguishable" if p >= alpha else ("better" if wins > losses else "worse")
    return Comparison(float(np.mean(deltas)), p, verdict, len(method), wins, losses)


def unpaired(method: Sequence[float], random: Sequence[float]) -> Comparison:
    """Difference of the cells' means where no seed shares its test points with Random's: no test."""
    return Comparison(statistics.fmean(method) - statistics.fmean(random), None, "n/a", 0, 0, 0)


MARKERS = {"better": "▲", "worse": "▼", "not distinguishable": "·", "n/a": ""}

__all__ = ["ALPHA", "BOOTSTRAP_SEED", "Comparison", "Estimate", "MARKERS", "RESAMPLES", "bootstrap_estimate",
           "compare_flags", "mcnemar_exact", "sample_std", "unpaired"]
