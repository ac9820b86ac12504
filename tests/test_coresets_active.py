"""Active-learning selection on a fixed proxy: uncertainty, DeepFool (DFAL), CAL, contextual diversity."""

import math

import numpy as np
import pytest
import torch

from dcrobench.errors import MethodError
from dcrobench_plugins.attacks.deepfool import deepfool
from dcrobench_plugins.coresets import active_learning as al
from dcrobench_plugins.coresets.proxy_selection import ProxySelection
from dcrobench_plugins.models import Classifier, Normalize, build_mlp
from tests.test_coresets_gradient import CPU, PROXY, tiny_set


def fixed_proxy(seed=0, classes=3, hidden=8):
    torch.manual_seed(seed)
    return build_mlp(1, 4, classes, [0.5], [0.25], hidden=hidden, layers=1).eval()


def linear_proxy(classes=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    model = Classifier(Normalize([0.0], [1.0]), torch.nn.Flatten(), 16, classes)
    with torch.no_grad():
        model.classifier.weight.copy_(torch.randn(classes, 16, generator=g))
        model.classifier.bias.copy_(torch.randn(classes, generator=g))
    return model.eval()


@pytest.fixture
def use_proxy(monkeypatch):
    def install(model):
        monkeypatch.setattr(ProxySelection, "trained_proxy", lambda self, data, settings, seed, device: model)
    return install


def per_class_top(scores, labels, budget):
    """The ``budget`` highest scores of every class, by a plain numpy sort (no ties in these tests)."""
    out = set()
    for c in np.unique(labels):
        idx = np.nonzero(labels == c)[0]
        out |= set(idx[np.argsort(-scores[idx], kind="stable")[:budget]].tolist())
    return out


@pytest.mark.parametrize("method,criterion", [(al.LeastConfidence, "lc"), (al.Margin, "margin"),
                                              (al.Entropy, "entropy")])
def test_uncertainty_picks_the_most_uncertain_points_of_a_fixed_proxy(use_proxy, method, criterion):
    data = tiny_set(n_per_class=15)
    model = fixed_proxy()
    use_proxy(model)
    with torch.no_grad():
        p = torch.softmax(model(data.images), 1).double().numpy()
    expected_scores = {
        "lc": 1 - p.max(1),
        "margin": -(np.sort(p, 1)[:, -1] - np.sort(p, 1)[:, -2]),
        "entropy": -(p * np.log(p)).sum(1),
    }[criterion]
    out = method(proxy=PROXY).run(data, 4, seed=0, device=CPU)
    assert out.provenance.per_class_counts == [4, 4, 4]
    assert set(out.indices.tolist()) == per_class_top(expected_scores, data.labels.numpy(), 4)


def test_deepfool_radius_is_the_exact_boundary_distance_of_a_linear_model():
    model = linear_proxy()
    x = torch.rand(40, 1, 4, 4, generator=torch.Generator().manual_seed(1))
    res = deepfool(model, x, max_iter=10, overshoot=0.0)
    w, b = model.classifier.weight.double(), model.classifier.bias.double()
    f = x.flatten(1).double() @ w.T + b
    k0 = f.argmax(1)
    exact = torch.stack([min(abs(f[i, k] - f[i, k0[i]]) / (w[k] - w[k0[i]]).norm()
                             for k in range(3) if k != k0[i]) for i in range(40)])
    assert res.flipped.all()
    assert torch.allclose(res.radius.double(), exact, rtol=1e-3, atol=1e-4)
    with torch.no_grad():  # and the perturbed points really changed label
        assert (model(x + res.perturbation * 1.01).argmax(1) != k0).all()


def test_deepfool_selection_keeps_the_smallest_radius_per_class(use_proxy):
    data = tiny_set(n_per_class=15)
    model = linear_proxy()
    use_proxy(model)
    radius = deepfool(model, data.images, max_iter=50, overshoot=0.02).radius.double().numpy()
    out = al.DeepFoolSelection(proxy=PROXY).run(data, 5, seed=0, device=CPU)
    assert out.provenance.per_class_counts == [5, 5, 5]
    assert set(out.indices.tolist()) == per_class_top(-radius, data.labels.numpy(), 5)


def test_cal_scores_match_a_brute_force_neighbour_loop():
    g = torch.Generator().manual_seed(3)
    emb = torch.randn(25, 4, generator=g, dtype=torch.float64)
    log_probs = torch.log_softmax(torch.randn(25, 3, generator=g, dtype=torch.float64), 1)
    probs = log_probs.exp()
    got = al.cal_scores(emb, log_probs, neighbors=4)
    for i in range(25):
        d = [(float((emb[i] - emb[j]).norm()), j) for j in range(25) if j != i]
        knn = [j for _, j in sorted(d)[:4]]
        kl = [float((probs[j] * (probs[j] / probs[i]).log()).sum()) for j in knn]
        assert math.isclose(float(got[i]), sum(kl) / 4, rel_tol=1e-9)


def test_cal_selects_the_highest_divergence_within_each_class(use_proxy):
    data = tiny_set(n_per_class=15)
    model = fixed_proxy(seed=2)
    use_proxy(model)
    with torch.no_grad():
        emb, log_probs = model.embed(data.images), torch.log_softmax(model(data.images).double(), 1)
    scores = torch.zeros(len(data), dtype=torch.float64)
    for c in range(3):
        idx = data.class_indices(c)
        scores[idx] = al.cal_scores(emb[idx], log_probs[idx], 10)
    out = al.Cal(proxy=PROXY).run(data, 3, seed=0, device=CPU)
    assert out.provenance.per_class_counts == [3, 3, 3]
    assert set(out.indices.tolist()) == per_class_top(scores.numpy(), data.labels.numpy(), 3)
    with pytest.raises(MethodError, match="neighbors"):
        al.Cal(proxy=PROXY, neighbors=0)


def test_contextual_diversity_is_farthest_first_under_symmetric_kl(use_proxy):
    data = tiny_set(n_per_class=15)
    model = fixed_proxy(seed=4)
    use_proxy(model)
    out = al.ContextualDiversity(proxy=PROXY).run(data, 4, seed=7, device=CPU)
    assert out.provenance.per_class_counts == [4, 4, 4]
    with torch.no_grad():
        probs = torch.softmax(model(data.images), 1).double()
    for c in range(3):
        idx = data.class_indices(c)
        p = probs[idx].numpy()
        skl = 0.5 * ((p[:, None] - p[None]) * (np.log(p[:, None]) - np.log(p[None]))).sum(2)  # dense check
        chosen = [int(np.nonzero(idx.numpy() == i)[0][0]) for i in out.indices.tolist() if int(data.labels[i]) == c]
        # the defining property: from its first center, each next center is the point farthest
        # (symmetric KL) from the centers chosen so far
        ok = False
        for first in chosen:
            order, rest = [first], set(chosen) - {first}
            while rest:
                mind = skl[:, order].min(1)
                mind[order] = -1
                nxt = int(np.argmax(mind))
                if nxt not in rest:
                    break
                order.append(nxt)
                rest.discard(nxt)
            ok = ok or not rest
        assert ok, f"class {c}: {chosen} is not a farthest-first traversal under symmetric KL"
    radii = out.meta["radius_per_class"]
    assert len(radii) == 3 and all(r >= 0 and math.isfinite(r) for r in radii)


# --- a confident proxy: divergences in log space, not from floored probabilities ------------------
# With logit gaps of tens, most softmax entries lie far below 1e-12; flooring them before the log
# (as version 1 did) rewrote the KL terms and changed both methods' selections.

def confident_proxy(classes=5, scale=30.0, seed=0):
    model = linear_proxy(classes=classes, seed=seed)
    with torch.no_grad():
        model.classifier.weight.mul_(scale)
        model.classifier.bias.mul_(scale)
    return model


def exact_log_softmax(model, images):
    """float64 log-softmax in numpy: ``z - logsumexp(z)``, the reference for every check below."""
    with torch.no_grad():
        z = model(images).double().numpy()
    m = z.max(1, keepdims=True)
    return z - m - np.log(np.exp(z - m).sum(1, keepdims=True))


def floored_log(lp):
    return np.log(np.maximum(np.exp(lp), 1e-12))


def test_divergences_are_exact_on_confident_logits():
    g = torch.Generator().manual_seed(5)
    logits = 40 * torch.randn(12, 6, generator=g, dtype=torch.float64)
    lp_t = torch.log_softmax(logits, 1)
    z = logits.numpy()
    lp = z - z.max(1, keepdims=True) - np.log(np.exp(z - z.max(1, keepdims=True)).sum(1, keepdims=True))
    p = np.exp(lp)
    assert (p < 1e-12).mean() > 0.3  # the regime the floor distorted
    # KL(p_i || p_j) for every pair, and the symmetric KL to row 0
    got = al.kl_rows(lp_t[:, None].expand(-1, 12, -1), lp_t[None].expand(12, -1, -1)).numpy()
    ref = (p[:, None] * (lp[:, None] - lp[None])).sum(2)
    np.testing.assert_allclose(got, ref, rtol=1e-10, atol=1e-12)
    floored = (p[:, None] * (floored_log(lp)[:, None] - floored_log(lp)[None])).sum(2)
    assert np.abs(floored - ref).max() > 1.0  # what the floor did to these values
    skl = al.symmetric_kl_to(lp_t, 0).numpy()
    np.testing.assert_allclose(skl, 0.5 * (ref[0] + ref[:, 0]), rtol=1e-10, atol=1e-12)
    assert skl[0] == 0.0
    # a row whose probabilities underflow to exact zeros still gives finite, non-negative values
    far = torch.log_softmax(torch.tensor([[0.0, -800.0, -900.0], [0.0, -1.0, -900.0]], dtype=torch.float64), 1)
    assert torch.isfinite(al.symmetric_kl_to(far, 0)).all() and (al.kl_rows(far, far.flip(0)) >= 0).all()


def test_contextual_diversity_on_a_confident_proxy_is_exact_log_space_farthest_first(use_proxy):
    data = tiny_set(n_per_class=20, classes=5)
    model = confident_proxy()
    use_proxy(model)
    lp = exact_log_softmax(model, data.images)
    assert (np.exp(lp) < 1e-12).mean() > 0.3
    seed, budget = 3, 6
    out = al.ContextualDiversity(proxy=PROXY).run(data, budget, seed=seed, device=CPU)
    gen = torch.Generator().manual_seed(seed)  # the documented seeded first center, one draw per class
    for c in range(5):
        idx = data.class_indices(c).numpy()
        lpc = lp[idx]
        pc = np.exp(lpc)
        skl = 0.5 * ((pc[:, None] - pc[None]) * (lpc[:, None] - lpc[None])).sum(2)
        order = [int(torch.randint(len(idx), (1,), generator=gen))]
        while len(order) < budget:
            mind = skl[:, order].min(1)
            mind[order] = -1
            order.append(int(np.argmax(mind)))
        chosen = {int(i) for i in out.indices.tolist() if int(data.labels[i]) == c}
        assert chosen == set(idx[order].tolist()), f"class {c}"
        radius = skl[:, order].min(1).max()
        assert math.isclose(out.meta["radius_per_class"][c], radius, rel_tol=1e-9)
    assert al.ContextualDiversity.version == al.Cal.version == "2"  # version-1 stage caches are not reused


def test_cal_on_a_confident_proxy_ranks_by_exact_log_space_kl(use_proxy):
    data = tiny_set(n_per_class=20, classes=5)
    model = confident_proxy(seed=1)
    use_proxy(model)
    lp = exact_log_softmax(model, data.images)
    p = np.exp(lp)
    assert (p < 1e-12).mean() > 0.3
    with torch.no_grad():
        emb = model.embed(data.images).double().numpy()
    k = 5
    scores = np.zeros(len(data))
    for c in range(5):
        idx = data.class_indices(c).numpy()
        d = np.linalg.norm(emb[idx][:, None] - emb[idx][None], axis=2)
        np.fill_diagonal(d, np.inf)
        for a, i in enumerate(idx):
            knn = idx[np.argsort(d[a], kind="stable")[:k]]
            scores[i] = (p[knn] * (lp[knn] - lp[i])).sum(1).mean()
    out = al.Cal(proxy=PROXY, neighbors=k).run(data, 4, seed=0, device=CPU)
    assert set(out.indices.tolist()) == per_class_top(scores, data.labels.numpy(), 4)
    assert math.isclose(out.meta["mean_score"], scores.mean(), rel_tol=1e-9)
