"""Defining properties of GraNd, Craig, GradMatch and Glister on tiny instances (forgetting:
test_coresets_training_dynamics.py)."""

import math

import pytest
import torch
import torch.nn.functional as F

from dcrobench.errors import ProtocolError
from dcrobench.imageset import ImageSet
from dcrobench_plugins.coresets.proxy import gradients_from_factors, train_proxy
from dcrobench_plugins.coresets import gradient_methods as gm
from dcrobench_plugins.coresets.training_dynamics import Forgetting
from dcrobench_plugins.coresets.submodular import (
    facility_location_greedy,
    facility_location_lazy_greedy,
    facility_location_value,
)

PROXY = {"model": "mlp", "model_params": {"hidden": 16, "layers": 1}, "epochs": 2, "batch_size": 8, "lr": 0.05}
CPU = torch.device("cpu")


def tiny_set(n_per_class=12, classes=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(classes).repeat_interleave(n_per_class)
    images = torch.rand(labels.numel(), 1, 4, 4, generator=g) * 0.5
    images[:, 0, 0, :] += labels[:, None].float() / (2 * classes)
    return ImageSet(images.clamp(0, 1), labels, classes, "tiny")


def random_factors(n=20, d=5, c=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    emb = torch.randn(n, d, generator=g, dtype=torch.float64)
    labels = torch.randint(0, c, (n,), generator=g)
    resid = torch.softmax(torch.randn(n, c, generator=g, dtype=torch.float64), 1)
    resid[torch.arange(n), labels] -= 1
    return emb, resid


# ----------------------------------------------------------------------------------- GraNd
def test_grand_scores_equal_naive_per_sample_gradient_norms():
    data = tiny_set(n_per_class=4)
    model = train_proxy(data, PROXY, 0, CPU)
    scores = gm.grand_scores(model, data.images, data.labels, CPU)
    lin = model.classifier
    for i in range(len(data)):
        model.zero_grad()
        F.cross_entropy(model(data.images[i:i + 1]), data.labels[i:i + 1]).backward()
        naive = torch.sqrt(lin.weight.grad.pow(2).sum() + lin.bias.grad.pow(2).sum())
        assert scores[i].item() == pytest.approx(naive.item(), rel=1e-4)


def test_grand_averages_over_repeats_and_keeps_highest():
    data = tiny_set()
    result = gm.GraNd(proxy=PROXY, repeats=2).run(data, 4, 0, CPU)
    seeds = [0, 10007]
    mean = sum(gm.grand_scores(train_proxy(data, PROXY, s, CPU), data.images, data.labels, CPU) for s in seeds) / 2
    for c in range(3):
        idx = data.class_indices(c)
        top = set(idx[mean[idx].argsort(descending=True)[:4]].tolist())
        assert set(result.indices[result.labels == c].tolist()) == top


# ----------------------------------------------------------------------------------- Craig
def test_lazy_greedy_objective_equals_plain_greedy():
    for seed in range(3):
        x = torch.randn(60, 4, generator=torch.Generator().manual_seed(seed))
        d = torch.cdist(x, x)
        sim = d.max() - d
        a, ga = facility_location_greedy(sim, 10)
        b, gb = facility_location_lazy_greedy(sim, 10)
        assert facility_location_value(sim, a) == pytest.approx(facility_location_value(sim, b), rel=1e-12)
        assert torch.allclose(ga, gb) and torch.equal(a, b)
        assert (ga[1:] <= ga[:-1] + 1e-9).all()          # diminishing returns
        assert ga.sum().item() == pytest.approx(facility_location_value(sim, a), rel=1e-12)


def test_craig_weights_are_cluster_sizes_summing_to_class_size():
    emb, resid = random_factors(n=30)
    pos, w, cov = gm.craig_select(emb, resid, 6)
    assert w.sum().item() == 30 and (w >= 1).all() and 0 < cov <= 1
    g = gradients_from_factors(emb, resid)
    d = torch.cdist(g, g)
    sim = d.max() - d
    plain, _ = facility_location_greedy(sim, 6)
    assert facility_location_value(sim, pos) == pytest.approx(facility_location_value(sim, plain), rel=1e-9)
    nearest = d[:, pos].argmin(1)
    assert torch.equal(w, torch.bincount(nearest, minlength=6).double())
    data = tiny_set(n_per_class=10)
    out = gm.Craig(proxy=PROXY).run(data, 3, 0, CPU)
    for c in range(3):
        assert out.weights[out.labels == c].sum().item() == 10


# ----------------------------------------------------------------------------------- GradMatch
def test_gradmatch_residual_decreases_with_budget():
    emb, resid = random_factors(n=40, d=6, c=4, seed=1)
    g = gradients_from_factors(emb, resid)
    target = g.sum(0)
    kern = g @ g.T
    for lam in (0.0, 0.5):
        support, w, residuals = gm.omp_nonneg(kern, 15, lam=lam)
        assert len(support) == len(residuals) >= 10 and (w >= 0).all()
        direct = torch.linalg.norm(torch.from_numpy(w) @ g[support] - target).item()
        assert residuals[-1] == pytest.approx(direct, rel=1e-6)
        objective = []
        for k in range(1, len(support) + 1):
            s, wk, r = gm.omp_nonneg(kern, k, lam=lam)
            assert s == support[:k]
            objective.append(r[-1] ** 2 + lam * float((wk ** 2).sum()))
        assert all(b <= a + 1e-9 for a, b in zip(objective, objective[1:]))  # nested supports
        if lam == 0.0:
            assert all(b <= a + 1e-9 for a, b in zip(residuals, residuals[1:]))
            assert residuals[-1] < 0.5 * residuals[0]
    data = tiny_set(n_per_class=10)
    out = gm.GradMatch(proxy=PROXY).run(data, 4, 0, CPU)
    assert out.provenance.per_class_counts == [4, 4, 4] and (out.weights >= 0).all() and out.weights.sum() > 0


def test_gradmatch_weights_solve_the_nonnegative_ridge_problem_from_any_start():
    """The warm-started active-set solver returns scipy's NNLS answer (KKT: w >= 0, zero gradient where
    w > 0, no descent direction where w = 0), cold or warm, on problems whose constraints bind."""
    import numpy as np
    from scipy.optimize import nnls

    rng = np.random.default_rng(3)
    bound = 0
    for trial in range(60):
        k, d = int(rng.integers(2, 25)), int(rng.integers(2, 30))
        a = rng.standard_normal((d, k))
        q, c = a.T @ a, rng.standard_normal(k) * 3
        lam = [0.01, 0.5, 5.0][trial % 3]
        mat = q + lam * np.eye(k)
        low = np.linalg.cholesky(mat)
        reference, _ = nnls(low.T, np.linalg.solve(low, c))
        start = np.maximum(rng.standard_normal(k), 0.0) if trial % 2 else None
        w = gm._nnls_ridge(q, c, lam, start=start)
        grad = c - mat @ w
        scale = 1e-8 * (1 + np.abs(c).max() + np.abs(mat).max() * w.max())  # rounding and the solver's jitter
        assert (w >= 0).all()
        assert np.abs(grad[w > 0]).max(initial=0.0) < scale
        assert grad[w == 0].max(initial=-1.0) < scale
        assert np.allclose(w, reference, rtol=1e-6, atol=1e-7)
        bound += int((w == 0).sum() > 0)
    assert bound > 20  # the constraints did bind in many of them


# ----------------------------------------------------------------------------------- Glister
def _val_loglik(w, b, x, y):
    return -F.cross_entropy(x @ w.T + b, y).item()


def test_glister_gains_match_exact_objective_on_linear_model():
    g = torch.Generator().manual_seed(0)
    x, xv = torch.randn(15, 4, generator=g, dtype=torch.float64), torch.randn(8, 4, generator=g, dtype=torch.float64)
    y, yv = torch.randint(0, 3, (15,), generator=g), torch.randint(0, 3, (8,), generator=g)
    w0, b0 = torch.randn(3, 4, generator=g, dtype=torch.float64), torch.randn(3, generator=g, dtype=torch.float64)
    eta = 1e-4
    picks, gains, thetas = gm.glister_greedy(x, y, xv, yv, w0, b0, 4, eta)
    assert len(set(picks.tolist())) == 4
    for t, j in enumerate(picks.tolist()):
        w, b = thetas[t]
        exact = []
        for e in range(15):
            wp, bp = w.clone().requires_grad_(), b.clone().requires_grad_()
            F.cross_entropy(x[e:e + 1] @ wp.T + bp, y[e:e + 1]).backward()
            exact.append(_val_loglik(w - eta * wp.grad, b - eta * bp.grad, xv, yv) - _val_loglik(w, b, xv, yv))
            if e == j:  # the parameter update after the pick is one SGD step on the picked example
                torch.testing.assert_close(thetas[t + 1][0], w - eta * wp.grad)
                torch.testing.assert_close(thetas[t + 1][1], b - eta * bp.grad)
        exact = torch.tensor(exact)
        assert gains[t].item() == pytest.approx(exact[j].item(), rel=1e-3)
        exact[picks[:t]] = -math.inf
        assert int(exact.argmax()) == j


def test_glister_method_exact_budget_and_holdout():
    data = tiny_set(n_per_class=12)
    out = gm.Glister(proxy=PROXY, val_fraction=0.25).run(data, 5, 0, CPU)
    assert out.provenance.per_class_counts == [5, 5, 5] and out.meta["classes_without_holdout"] == []
    with pytest.raises(Exception, match="val_fraction"):
        gm.Glister(proxy=PROXY, val_fraction=1.5).run(data, 5, 0, CPU)


# ----------------------------------------------------------------------------------- all methods
@pytest.mark.parametrize("cls", [Forgetting, gm.GraNd, gm.Craig, gm.GradMatch, gm.Glister])
def test_every_method_exact_per_class_budget(cls):
    data = tiny_set(n_per_class=9)
    extra = {"repeats": 2} if cls is gm.GraNd else {}
    out = cls(proxy=PROXY, **extra).run(data, 4, 1, CPU)
    assert out.provenance.per_class_counts == [4, 4, 4]
    assert out.indices.unique().numel() == 12
    assert (out.weights is not None) == (cls in (gm.Craig, gm.GradMatch))
    assert out.provenance.params["proxy"] == PROXY
    with pytest.raises(ProtocolError, match="proxy: unknown key 'epoch'"):  # refused before any work
        cls(proxy={"epoch": 3})


def test_registered():
    # the coresets_gradient plugin also registers forgetting (its records name that plugin)
    names = {c.name for c in gm.register_methods()}
    assert names == {"forgetting", "grand", "craig", "gradmatch", "glister"}
