"""MCS (paper §5): exactness against brute force, covers, Def. 5 weights, cache, harness, ZIP."""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np
import pytest
import torch
from dcrobench_plugins.mcs import plugin as mcs_plugin
from dcrobench_plugins.mcs.distances import DistanceOracle, pairwise
from dcrobench_plugins.mcs.plugin import Mcs, zip_check
from dcrobench_plugins.mcs.solver import McsSolution, solve_eta_mcs, solve_k_mcs

from dcrobench.errors import BudgetError
from dcrobench.imageset import ImageSet

CPU = torch.device("cpu")
ORD = {"l2": 2, "l1": 1, "linf": np.inf}


def ref_dist(x: np.ndarray, metric: str) -> np.ndarray:
    """Independent distance matrix (numpy, direct differences)."""
    diff = x[:, None, :] - x[None, :, :]
    return np.linalg.norm(diff, ord=ORD[metric], axis=2)


def brute_k(d: np.ndarray, k: int) -> float:
    n = d.shape[0]
    return min(d[:, list(c)].min(1).max() for c in itertools.combinations(range(n), k))


def brute_cover(a: np.ndarray) -> int:
    """Fewest columns of the boolean matrix ``a`` covering every row (every row coverable)."""
    c = a.shape[1]
    return next(m for m in range(1, c + 1)
                if any(a[:, list(cols)].any(1).all() for cols in itertools.combinations(range(c), m)))


def brute_eta(d: np.ndarray, eta: float) -> int:
    return brute_cover(d <= eta)


def instances(seed: int, count: int, n_max: int = 13):
    rng = np.random.default_rng(seed)
    for t in range(count):
        n = int(rng.integers(4, n_max))
        dim = int(rng.integers(2, 7))
        if t % 3 == 2:  # quantised pixels: many exact ties and duplicate points
            x = rng.integers(0, 4, size=(n, dim)) / 3.0
        else:
            x = rng.random((n, dim))
        yield x


@pytest.mark.parametrize("metric", ["l2", "linf", "l1"])
def test_k_mcs_radius_equals_brute_force(metric):
    for x in instances(1 + len(metric), 10):
        d = ref_dist(x, metric)
        n = x.shape[0]
        for k in {1, 2, min(4, n - 1)}:
            sol = solve_k_mcs(DistanceOracle(torch.tensor(x), metric), k)
            assert sol.optimal and sol.status == "optimal"
            assert len(sol.centers) == k == len(set(sol.centers))
            assert sol.eta == pytest.approx(brute_k(d, k), abs=1e-9)
            assert sol.lower_bound == pytest.approx(sol.eta, abs=1e-9)
            # the reported radius is the true covering radius of the returned centres
            assert d[:, sol.centers].min(1).max() == pytest.approx(sol.eta, abs=1e-9)


def test_k_mcs_forty_points_against_brute_force():
    rng = np.random.default_rng(7)
    x = rng.random((40, 3))
    d = ref_dist(x, "l2")
    for k in (1, 2):
        sol = solve_k_mcs(DistanceOracle(torch.tensor(x), "l2"), k)
        assert sol.optimal and sol.eta == pytest.approx(brute_k(d, k), abs=1e-9)
    sol = solve_k_mcs(DistanceOracle(torch.tensor(x), "l2"), 3)  # C(40,3) = 9,880 subsets
    assert sol.eta == pytest.approx(brute_k(d, 3), abs=1e-9)


@pytest.mark.parametrize("metric", ["l2", "linf", "l1"])
def test_eta_mcs_size_equals_brute_force(metric):
    for x in instances(11 + len(metric), 8, n_max=11):
        d = ref_dist(x, metric)
        for q in (0.2, 0.45):
            eta = float(np.quantile(d[d > 0], q)) if (d > 0).any() else 0.0
            sol = solve_eta_mcs(DistanceOracle(torch.tensor(x), metric), eta)
            assert sol.optimal
            assert len(sol.centers) == brute_eta(d, eta)
            assert (d[:, sol.centers].min(1) <= eta + 1e-12).all()  # it covers, recomputed
            assert sol.eta <= eta + 1e-12


def test_distances_match_numpy():
    rng = np.random.default_rng(3)
    x = rng.random((30, 17))
    x[5] = x[4]  # a duplicate: exact zero needed
    for metric in ("l2", "l1", "linf"):
        d = DistanceOracle(torch.tensor(x), metric).full()
        np.testing.assert_allclose(d, ref_dist(x, metric), rtol=1e-12, atol=1e-12)
        assert d[4, 5] == 0.0
        np.testing.assert_allclose(pairwise(torch.tensor(x[:7]), torch.tensor(x), metric),
                                   ref_dist(x, metric)[:7], rtol=1e-12, atol=1e-12)


def tiny_imageset(n_per_class=(14, 11, 9), seed=0, sep=0.0) -> ImageSet:
    g = torch.Generator().manual_seed(seed)
    imgs, labels = [], []
    for c, n in enumerate(n_per_class):
        base = torch.rand(n, 1, 4, 4, generator=g) * (1 - sep)
        if sep:
            base = base * 0.1 + (c / max(1, len(n_per_class) - 1)) * 0.9
        imgs.append(base.clamp(0, 1))
        labels.append(torch.full((n,), c, dtype=torch.long))
    return ImageSet(torch.cat(imgs), torch.cat(labels), len(n_per_class), "tiny")


@pytest.mark.parametrize("metric", ["l2", "linf"])
def test_plugin_run_end_to_end(metric):
    data = tiny_imageset()
    method = Mcs(metric=metric)
    out = method.run(data, 3, 0, CPU)  # the harness validates shapes, indices, labels, weights
    assert out.provenance.per_class_counts == [3, 3, 3]
    assert out.meta["metric"] == metric
    etas = out.meta["eta_per_class"]
    assert out.extra_radius_norm == out.meta["metric"]
    assert torch.equal(out.extra_radius, torch.tensor(etas, dtype=torch.float32)[out.labels])  # Def. 5, per sample
    assert len(etas) == 3
    for c in range(3):
        idx = data.class_indices(c).numpy()
        x = data.images[idx].reshape(len(idx), -1).double().numpy()
        d = ref_dist(x, metric)
        sel = out.indices[out.labels == c].numpy()
        local = [int(np.flatnonzero(idx == s)[0]) for s in sel]
        # k-MCS optimum (brute force) and an independent cover recomputation
        assert etas[c] == pytest.approx(brute_k(d, 3), abs=1e-6)
        nearest = d[:, local].min(1)
        assert nearest.max() <= etas[c] + 1e-6
        # Def. 5 weights partition the class: sum = class size, each = points assigned to it
        w = out.weights[out.labels == c].numpy()
        assert w.sum() == pytest.approx(len(idx))
        assign = np.argmin(d[:, local] - np.eye(len(idx))[:, local] * 1e-9, axis=1)
        np.testing.assert_allclose(np.sort(w), np.sort(np.bincount(assign, minlength=3).astype(float)))
        stats = out.meta["mcs_per_class"][c]
        assert stats["optimal"] and stats["lower_bound"] == pytest.approx(stats["eta"])
        assert {"solves", "seconds", "gap"} <= set(stats)


def test_plugin_eta_mode_counts_and_cover():
    data = tiny_imageset()
    method = Mcs(radius=1.3)
    with pytest.raises(BudgetError, match="takes .* images, more than the budget of 2"):
        method.run(data, 2, 0, CPU)  # the budget is the most images the eta-MCS may take per class
    out = method.run(data, 9, 0, CPU)
    for c in range(3):
        idx = data.class_indices(c).numpy()
        x = data.images[idx].reshape(len(idx), -1).double().numpy()
        d = ref_dist(x, "l2")
        sel = out.indices[out.labels == c].numpy()
        local = [int(np.flatnonzero(idx == s)[0]) for s in sel]
        assert d[:, local].min(1).max() <= 1.3 + 1e-9
        assert len(local) == brute_eta(d, 1.3) if len(idx) <= 11 else True
        assert out.weights[out.labels == c].sum().item() == pytest.approx(len(idx))
    assert out.meta["mode"] == "eta-MCS"


def test_cache_hit_returns_same_answer_without_solving(monkeypatch):
    data = tiny_imageset(seed=5)
    first = Mcs().run(data, 2, 0, CPU)
    assert not any(s["cache_hit"] for s in first.meta["mcs_per_class"])

    def boom(*a, **k):
        raise AssertionError("solver called despite a cache entry")

    monkeypatch.setattr(mcs_plugin, "solve_k_mcs", boom)
    second = Mcs().run(data, 2, 1, CPU)  # another seed: deterministic method, same problem
    assert all(s["cache_hit"] for s in second.meta["mcs_per_class"])
    assert torch.equal(first.indices, second.indices)
    assert torch.equal(first.weights, second.weights)
    assert first.meta["eta_per_class"] == second.meta["eta_per_class"]


def test_budget_larger_than_class_is_rejected_by_harness():
    data = tiny_imageset((5, 8, 8))
    with pytest.raises(BudgetError):
        Mcs().run(data, 6, 0, CPU)


def test_time_limit_returns_cover_with_certified_gap():
    rng = np.random.default_rng(2)
    x = torch.tensor(rng.random((60, 5)))
    sol = solve_k_mcs(DistanceOracle(x, "l2"), 5, time_limit=0.0)
    d = ref_dist(x.numpy(), "l2")
    assert len(sol.centers) == 5
    assert d[:, sol.centers].min(1).max() == pytest.approx(sol.eta, abs=1e-9)
    assert 0.0 <= sol.lower_bound <= sol.eta and sol.gap >= 0.0
    exact = solve_k_mcs(DistanceOracle(x, "l2"), 5)
    assert sol.lower_bound <= exact.eta + 1e-12 <= sol.eta + 2e-12


def test_zip_diagnostic():
    far = tiny_imageset((6, 6, 6), sep=1.0)
    method = Mcs()
    out = method.run(far, 2, 0, CPU)
    z = method.diagnostics(out, eps=0.01, norm="l2")["zip"]
    assert z["satisfied"] and z["margin"] > 0 and z["metric"] == "l2" and z["exact"]
    assert z["radius"] == pytest.approx(0.01 + max(out.meta["eta_per_class"]))
    assert z["min_interclass_distance"] > 2 * z["radius"]
    z2 = zip_check(out, eps=10.0, norm="linf", metric="l2")  # huge eps: fattenings overlap
    assert not z2["satisfied"] and z2["margin"] < 0 and not z2["exact"]


def test_registered_as_plugin():
    from dcrobench.registry import build_registries

    regs = build_registries()
    assert regs.methods.get("mcs") is Mcs
    assert Mcs.uses_seed is False and Mcs.kind == "selection"


def test_lp_bound_and_cutoff_milp_on_small_covers():
    from dcrobench_plugins.mcs import setcover

    rng = np.random.default_rng(4)
    for _ in range(6):
        a = rng.random((9, 8)) < 0.3
        a[np.arange(8), np.arange(8)] = True  # every row coverable
        a[8, rng.integers(0, 8)] = True
        best = brute_cover(a)
        assert setcover.lp_solution(a)[0] <= best + 1e-9  # LP relaxation is a valid lower bound
        res = setcover.solve_milp(a, target=best - 0.5, cutoff=best - 0.5)  # no cover this small
        assert not res.chosen or len(res.chosen) >= best
        assert res.status in ("infeasible", "optimal", "unknown")
        ok = setcover.solve_milp(a, target=best + 0.5, cutoff=best + 0.5)
        assert ok.chosen and len(ok.chosen) <= best and a[:, ok.chosen].any(1).all()


def test_milp_thread_count_can_change_between_runs():
    """HiGHS sizes one process-wide thread pool at its first run and fails at once (no result)
    any later run asking for another size: every run must still solve, whatever came before."""
    from dcrobench_plugins.mcs import setcover

    rng = np.random.default_rng(7)
    a = rng.random((30, 20)) < 0.2
    a[np.arange(20), np.arange(20)] = True
    a[20:, 0] = True
    best = brute_cover(a)
    for threads in (1, 2, 2, 1, 2):
        assert setcover.lp_solution(a)[0] > 0  # the LPs run on one thread in between
        res = setcover.solve_milp(a, threads=threads)
        assert res.status == "optimal" and len(res.chosen) == best and a[:, res.chosen].any(1).all()


def test_cover_search_finds_planted_covers_and_keeps_its_scores_exact():
    from dcrobench_plugins.mcs import coversearch

    rng = np.random.default_rng(11)
    for trial in range(5):
        rows, cols, k = 120, 60, 6
        a = rng.random((rows, cols)) < 0.08
        planted = rng.choice(cols, size=k, replace=False)
        part = rng.integers(0, k, size=rows)  # every row belongs to one planted column
        a[np.arange(rows), planted[part]] = True
        cover, w = coversearch.cover_search(a, k, [], seconds=30.0, max_steps=20000, seed=trial)
        assert cover is not None and len(cover) <= k and a[:, cover].any(1).all()
        assert w.shape == (rows,) and (w >= 1).all()
    # the incremental gain / loss / owner bookkeeping equals a recomputation after many steps
    a = rng.random((50, 30)) < 0.2
    st = coversearch._State(a, None, k=5, seed=1)
    for t, j in enumerate([3, 7, 11, 19, 25]):
        st.add(j, t)
    st.remove(7, 6)
    st.add(8, 7)
    st.run(300)
    assert len(st.chosen) == 5 and st.t > 7
    af = a.astype(float)
    cnt = af[:, st.chosen].sum(1)
    assert np.array_equal(cnt, st.cnt)
    assert sorted(st.unc[: st.uncovered]) == list(np.flatnonzero(cnt == 0))
    assert np.allclose(st.gain, (st.w * (cnt == 0)) @ af)
    for c in st.chosen:
        assert st.loss[c] == pytest.approx(float((st.w * ((cnt == 1) & a[:, c])).sum()))
    one = cnt == 1
    assert np.array_equal(st.owner_sum[one], np.array([st.chosen[int(np.argmax(af[i, st.chosen]))]
                                                       for i in np.flatnonzero(one)]))


def test_cover_search_reports_failure_when_k_columns_cannot_cover():
    from dcrobench_plugins.mcs import coversearch

    a = np.eye(8, dtype=bool)  # 8 disjoint singletons need 8 columns
    cover, _ = coversearch.cover_search(a, 7, [0, 1], seconds=5.0, max_steps=500)
    assert cover is None
    cover, _ = coversearch.cover_search(a, 8, [], seconds=5.0, max_steps=500)
    assert sorted(cover) == list(range(8))


def test_k_mcs_exact_without_the_full_matrix(monkeypatch):
    """Classes too large for the whole matrix run the local search on W with row generation."""
    from dcrobench_plugins.mcs import solver

    monkeypatch.setattr(solver, "_FULL_MATRIX_ENTRIES", 0)
    for x in instances(21, 6, n_max=30):
        d = ref_dist(x, "l2")
        for k in (2, 3):
            if k >= x.shape[0]:
                continue
            sol = solve_k_mcs(DistanceOracle(torch.tensor(x), "l2"), k)
            assert sol.optimal and sol.eta == pytest.approx(brute_k(d, k), abs=1e-9)
            assert d[:, sol.centers].min(1).max() == pytest.approx(sol.eta, abs=1e-9)


def test_cover_search_workers_are_deterministic_and_cover():
    """Parallel searches run in lockstep: same seed, steps and workers give the same cover."""
    from dcrobench_plugins.mcs import coversearch

    rng = np.random.default_rng(5)
    rows, cols, k = 150, 80, 7
    a = rng.random((rows, cols)) < 0.06
    planted = rng.choice(cols, size=k, replace=False)
    a[np.arange(rows), planted[rng.integers(0, k, size=rows)]] = True
    runs = [coversearch.cover_search(a, k, None, seconds=30.0, max_steps=50_000, seed=3, workers=2)[0]
            for _ in range(2)]
    assert runs[0] is not None and runs[0] == runs[1]
    assert len(runs[0]) == k and a[:, runs[0]].any(1).all()


def test_k_mcs_without_proofs_keeps_a_certified_bound(monkeypatch):
    """Large classes under a time limit skip the proof MILPs (local search, then one MILP just
    below (1 - rel_gap) x incumbent); whatever the status, the bound stays certified."""
    from dcrobench_plugins.mcs import solver

    monkeypatch.setattr(solver, "_MILP_MAX_POINTS", 0)
    rel_gap, gap_milps = 1e-9, 0  # so small that the bound-raising MILP is the proof itself
    for x in instances(31, 8, n_max=36):
        d = ref_dist(x, "l2")
        k = 3
        sol = solve_k_mcs(DistanceOracle(torch.tensor(x), "l2"), k, time_limit=2.0, rel_gap=rel_gap)
        opt = brute_k(d, k)
        assert sol.lower_bound <= opt + 1e-9 <= sol.eta + 2e-9
        assert d[:, sol.centers].min(1).max() == pytest.approx(sol.eta, abs=1e-9)
        assert sol.status in ("optimal", "gap", "time_limit")
        if sol.status == "gap":
            assert sol.gap <= rel_gap
        gap_milps += sol.decisions
    assert gap_milps >= 1  # some instance was left open by the LP and went through that MILP


def test_reference_algorithm1_brackets_the_optimum_and_reports_a_stopped_run(monkeypatch):
    """benchmarks/perf/mcs_reference.py: the speed-up baseline must itself be right."""
    from pathlib import Path

    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "benchmarks" / "perf"))
    import mcs_reference

    x = np.random.default_rng(3).random((11, 3))
    d = ref_dist(x, "l2")
    for k in (2, 3):
        r = mcs_reference.algorithm1(torch.tensor(x), k)
        best = brute_k(d, k)
        assert r["finished"] and best - 1e-12 <= r["eta"] <= best + 1e-3
        assert r["eta"] <= r["eta_upper"] + 1e-12 and r["cpu_seconds"] > 0
    monkeypatch.setattr(mcs_reference, "feasible_k", lambda *a, **kw: (False, 0.0, 0.0))  # time limit hit
    r = mcs_reference.algorithm1(torch.tensor(x), 2, time_limit=5.0)
    assert not r["finished"] and r["milps"] == 1 and r["centers"] is None


def test_svhn_sized_standin_is_deterministic_colour_crops(monkeypatch):
    """benchmarks/perf/svhn_standin.py: the stand-in for the paper's largest MCS class."""
    from pathlib import Path

    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "benchmarks" / "perf"))
    import svhn_standin

    assert svhn_standin.SVHN_LARGEST_CLASS == 13_861
    a, b = svhn_standin.svhn_like_class(40, seed=5), svhn_standin.svhn_like_class(40, seed=5)
    assert a.shape == (40, 3 * 32 * 32) and a.dtype == torch.float64 and torch.equal(a, b)
    assert a.min() >= 0.0 and a.max() <= 1.0
    assert not torch.equal(a, svhn_standin.svhn_like_class(40, seed=6))
    img = a.reshape(40, 3, 32, 32)
    # colour: the three channels differ per image; the digit sits in the middle columns, where the
    # pixels deviate from the image's background (its median colour) more than at the edges' rows
    assert (img[:, 0] - img[:, 1]).abs().mean() > 0.05
    dev = (img - img.flatten(2).median(2).values[..., None, None]).abs().mean(1)
    assert dev[:, 8:24, 12:20].mean() > dev[:, :3, :].mean()


def test_proof_bound_benchmark_finds_a_violated_rank_cut_and_records_the_proof(monkeypatch):
    """benchmarks/perf/mcs_proof_bounds.py: its "no violated cut" rows must be able to say otherwise."""
    from pathlib import Path

    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "benchmarks" / "perf"))
    import mcs_proof_bounds

    # an odd cycle of 5 rows, each column covering two neighbours: LP 2.5 (every s = 1/2), cover number 3
    a = np.zeros((5, 5), dtype=bool)
    for i in range(5):
        a[i, i] = a[(i + 1) % 5, i] = True
    lp, s = mcs_proof_bounds.lp_with_cuts(a)
    assert lp == pytest.approx(2.5) and np.allclose(s, 0.5)
    cuts, tried, worst, unfinished = mcs_proof_bounds.rank_cuts(a, s, size=5, tries=5, tau_limit=5.0)
    assert tried >= 1 and worst == pytest.approx(0.5) and unfinished == 0
    assert all(rhs == 3 and len(cols) == 5 for cols, _, rhs in cuts)
    assert mcs_proof_bounds.lp_with_cuts(a, cuts)[0] == pytest.approx(3.0)
    # groups of two rows (a cover of 1 or 2 columns each) cut nothing off
    assert mcs_proof_bounds.rank_cuts(a, s, size=2, tries=5, tau_limit=5.0)[0] == []
    # the zero-half cut of the cycle: half the sum of its 5 rows, rounded up, is s(all) >= 3
    zero_half = mcs_proof_bounds.zero_half_cuts(a, s)
    assert zero_half and all(rhs == 3 and np.array_equal(coef, np.ones(5)) for _, coef, rhs in zero_half)
    assert mcs_proof_bounds.lp_with_cuts(a, zero_half)[0] == pytest.approx(3.0)
    assert mcs_proof_bounds.zero_half_cuts(a, np.ones(5)) == []  # an integer cover violates none
    # "a cover of at most 2 columns?": none; of at most 3: one (the solver's options, with or without cuts)
    assert mcs_proof_bounds.proof_milp_seconds(a, 3)[1] and mcs_proof_bounds.proof_milp_seconds(a, 3, zero_half)[1]
    assert not mcs_proof_bounds.proof_milp_seconds(a, 4)[1]

    x = torch.tensor(np.random.default_rng(1).random((80, 3)))  # an instance the LP bound leaves to a MILP
    with mcs_proof_bounds.capture_proof_milps() as milps:
        sol = solve_k_mcs(DistanceOracle(x, "l2"), 8)
    assert sol.optimal and milps
    from dcrobench_plugins.mcs import setcover, solver

    assert setcover.solve_milp.__name__ == "solve_milp" and solver.KCenterSearch.decide.__name__ == "decide"
    for m in milps:  # each recorded MILP: a cover question at a radius below the optimum or at it
        assert m["a"].dtype == bool and m["need"] >= 1 and m["r"] <= sol.eta + 1e-12


def test_search_stats_reach_the_solution_as_one_typed_record():
    from dcrobench_plugins.mcs.solver import KSearchStats, MilpStats

    x = torch.tensor(np.random.default_rng(5).random((60, 2)))
    sol = solve_k_mcs(DistanceOracle(x, "l2"), 4)
    assert set(sol.extra) == {f.name for f in dataclasses.fields(KSearchStats)}
    assert sol.extra["solves"] == sol.solves and sol.extra["decisions"] == sol.decisions
    assert isinstance(sol.extra["max_milp_shape"], list) and sol.extra["trace"][-1][1] == pytest.approx(sol.eta)
    eta = solve_eta_mcs(DistanceOracle(x, "l2"), 0.3)
    assert set(eta.extra) == {f.name for f in dataclasses.fields(MilpStats)}
    assert McsSolution.from_json(sol.to_json()) == sol
