"""Dataset condensation (DM, GM, TM) and DSA: the defining behaviour on tiny data.

Tiny real data: three classes of scikit-learn's 8x8 digits (30 images each); a depth-2,
width-16 ConvNet (depth 3 pools 8x8 down to 1x1, where instance norm makes every embedding
constant).
"""

from __future__ import annotations

import pytest
import torch
from dcrobench_plugins.condensation import tm as tm_mod
from dcrobench_plugins.condensation.common import STD_FLOOR
from dcrobench_plugins.condensation.dm import DM, class_means
from dcrobench_plugins.condensation.dsa import DSA
from dcrobench_plugins.condensation.gm import GM, gradient_distance, layer_distance
from dcrobench_plugins.condensation.idm import IDM
from dcrobench_plugins.condensation.robust_tm import GUARD, MAT
from dcrobench_plugins.condensation.tm import TM, ExpertBuffer, trajectory_distance

from dcrobench.errors import BudgetError, MethodError
from dcrobench.imageset import ImageSet
from dcrobench_plugins.models import build_convnet

CPU = torch.device("cpu")
NET = {"net_width": 16, "net_depth": 2, "progress": False}


@pytest.fixture(scope="module")
def digits3() -> ImageSet:
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.tensor(d.images / 16.0, dtype=torch.float32)[:, None]
    y = torch.tensor(d.target, dtype=torch.long)
    keep = torch.cat([torch.nonzero(y == c).flatten()[:30] for c in range(3)])
    return ImageSet(x[keep].contiguous(), y[keep].contiguous(), 3, "digits3")


def fixed_embedding_distance(data: ImageSet, images: torch.Tensor, labels: torch.Tensor, seed: int) -> float:
    """sum_c ||mean real - mean synthetic||^2 in ONE fixed random embedding (not used in training)."""
    mean, std = data.channel_stats(floor=STD_FLOOR)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(10_000 + seed)
        net = build_convnet(1, 8, 3, mean, std, width=16, depth=2)
    with torch.no_grad():
        a = class_means(net.embed(data.images), data.labels, 3)
        b = class_means(net.embed(images), labels, 3)
    return float(((a - b) ** 2).sum())


def check_output(result, budget: int, num_classes: int = 3) -> None:
    assert result.images.shape == (budget * num_classes, 1, 8, 8)
    assert torch.bincount(result.labels, minlength=num_classes).tolist() == [budget] * num_classes
    assert float(result.images.min()) >= 0.0 and float(result.images.max()) <= 1.0
    assert result.indices is None and result.weights is None
    assert result.provenance.compress_s > 0 and result.meta["loss_final"] is not None


# ---------------------------------------------------------------------------------- DSA
def test_dsa_same_parameters_on_both_branches():
    dsa = DSA()  # all six families
    x = torch.rand(4, 3, 8, 8)
    for seed in range(12):  # covers every family several times
        p1 = dsa.sample(2, (8, 8), torch.Generator().manual_seed(seed))
        p2 = dsa.sample(2, (8, 8), torch.Generator().manual_seed(seed))
        assert torch.equal(p1.family, p2.family)
        assert all(torch.equal(p1.values[k], p2.values[k]) for k in p1.values)  # same seed -> same transform
        real = dsa(x[:2], p1, torch.tensor([0, 1]))
        syn = dsa(x[:2].clone().requires_grad_(True), p2, torch.tensor([0, 1]))
        assert torch.allclose(real, syn.detach())
        # an image gets its group's transformation, wherever it sits in the batch
        syn_grouped = dsa(torch.stack([x[3], x[0], x[0]]), p1, torch.tensor([1, 0, 0]))
        assert torch.allclose(syn_grouped[1], real[0]) and torch.allclose(syn_grouped[2], real[0])


def test_dsa_is_differentiable_and_transforms():
    dsa = DSA("crop_scale_rotate")
    x = torch.rand(5, 1, 8, 8, requires_grad=True)
    out = dsa(x, dsa.sample(5, (8, 8), torch.Generator().manual_seed(0)))
    out.sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    assert not torch.allclose(out, x)
    assert torch.equal(DSA("none")(x, DSA("none").sample(5, (8, 8), torch.Generator())), x)
    with pytest.raises(ValueError):
        DSA("color_warp")


def test_dm_uses_one_transformation_for_real_and_synthetic(digits3, monkeypatch):
    seen = []
    original = DSA.apply

    def spy(self, x, params, group=None):
        seen.append((params, None if group is None else group.clone()))
        return original(self, x, params, group)

    monkeypatch.setattr(DSA, "apply", spy)
    DM(**NET, iterations=2, batch_real=10).run(digits3, 2, 0, CPU)
    assert len(seen) == 4  # per iteration: real, synthetic
    for (p_real, g_real), (p_syn, g_syn) in (seen[0:2], seen[2:4]):
        assert p_real is p_syn and p_real.num_groups == 3  # one parameter set per class, shared
        assert g_real.unique().tolist() == [0, 1, 2] and g_syn.tolist() == [0, 0, 1, 1, 2, 2]


# ---------------------------------------------------------------------------------- DM
def test_dm_loss_decreases_and_means_approach_real_means(digits3):
    budget = 3
    kw = {**NET, "batch_real": 30, "lr_img": 3.0}
    init = DM(**kw, iterations=0).run(digits3, budget, 0, CPU)
    res = DM(**kw, iterations=60).run(digits3, budget, 0, CPU)
    check_output(res, budget)
    curve = res.meta["loss_curve"]
    assert sum(curve[-10:]) / 10 < 0.7 * sum(curve[:10]) / 10
    for seed in range(3):  # fixed embeddings never used during training
        before = fixed_embedding_distance(digits3, init.images, init.labels, seed)
        after = fixed_embedding_distance(digits3, res.images, res.labels, seed)
        assert after < 0.6 * before, (seed, before, after)


def test_init_real_starts_from_real_images_and_budget_rules(digits3):
    res = DM(**NET, iterations=0).run(digits3, 4, 1, CPU)
    flat = digits3.images.flatten(1)
    for img, lab in zip(res.images, res.labels):
        d = (flat - img.flatten()).abs().amax(1)
        i = int(d.argmin())
        assert float(d[i]) < 1e-5 and int(digits3.labels[i]) == int(lab)
    with pytest.raises(BudgetError):
        DM(**NET, iterations=1).run(digits3, 31, 0, CPU)
    big = DM(**NET, iterations=1, init="noise", batch_real=8).run(digits3, 31, 0, CPU)  # noise init: any budget
    assert torch.bincount(big.labels).tolist() == [31, 31, 31]


def test_resume_continues_from_the_saved_iteration(digits3, monkeypatch, tmp_path):
    kw = {**NET, "iterations": 9, "batch_real": 10, "checkpoint_every": 4}
    monkeypatch.setenv("DCROBENCH_CACHE", str(tmp_path / "a"))
    straight = DM(**kw).run(digits3, 2, 0, CPU)

    monkeypatch.setenv("DCROBENCH_CACHE", str(tmp_path / "b"))
    original = DM.step

    def crash_at_6(self, ctx, it):
        if it == 6:
            raise KeyboardInterrupt
        return original(self, ctx, it)

    monkeypatch.setattr(DM, "step", crash_at_6)
    with pytest.raises(KeyboardInterrupt):
        DM(**kw).run(digits3, 2, 0, CPU)
    monkeypatch.setattr(DM, "step", original)
    started = []
    monkeypatch.setattr(DM, "step", lambda self, ctx, it: (started.append(it), original(self, ctx, it))[1])
    resumed = DM(**kw).run(digits3, 2, 0, CPU)
    assert resumed.meta["resumed_from"] == 4 and started[0] == 4 and started[-1] == 8
    assert torch.allclose(resumed.images, straight.images, atol=1e-6)  # same RNG stream, same optimiser state
    again = DM(**kw).run(digits3, 2, 0, CPU)  # finished: served from the cache
    assert again.meta["cached"] and torch.equal(again.images, resumed.images)
    longer = DM(**{**kw, "iterations": 11}).run(digits3, 2, 0, CPU)  # extends the checkpoint
    assert longer.meta["resumed_from"] == 9


# ---------------------------------------------------------------------------------- GM
def test_gm_layer_distance_is_the_papers():
    g = torch.randn(4, 3, 3, 3)
    assert float(layer_distance(g, g)) == pytest.approx(0.0, abs=1e-5)
    assert float(layer_distance(g, -g)) == pytest.approx(8.0, abs=1e-4)  # 4 output nodes x (1 - (-1))
    assert float(layer_distance(torch.randn(5), torch.randn(5))) == 0.0  # biases / norms ignored


def test_gm_gradient_distance_decreases(digits3):
    budget = 3
    kw = {**NET, "outer_loop": 5, "inner_loop": 2, "batch_real": 30}
    init = GM(**kw, iterations=0).run(digits3, budget, 0, CPU)
    res = GM(**kw, iterations=12).run(digits3, budget, 0, CPU)
    check_output(res, budget)
    assert res.meta["outer_loop"] == 5 and res.meta["inner_loop"] == 2
    curve = res.meta["loss_curve"]
    assert sum(curve[-3:]) / 3 < 0.85 * sum(curve[:3]) / 3
    before = gradient_distance(digits3, init.images, init.labels, range(4), width=16, depth=2)
    after = gradient_distance(digits3, res.images, res.labels, range(4), width=16, depth=2)
    assert after < 0.8 * before


def test_gm_default_loops_follow_the_original_table():
    assert GM().loops(1) == (1, 1) and GM().loops(10) == (10, 50) and GM().loops(50) == (50, 10)
    assert GM(outer_loop=3, inner_loop=0).loops(50) == (3, 0)


# ---------------------------------------------------------------------------------- TM
TM_KW = {**NET, "num_experts": 2, "expert_train_epochs": 4, "expert_epochs": 2, "max_start_epoch": 2,
         "syn_steps": 6, "expert_batch": 16, "lr_img": 10.0, "dsa_strategy": "none"}


def test_tm_experts_are_training_trajectories_and_are_replayed(digits3, monkeypatch):
    method = TM(**TM_KW, iterations=6)
    gets, starts = [], []
    original_get, original_rollout = ExpertBuffer.get, tm_mod.student_rollout

    def spy_get(self, expert, epoch):
        out = original_get(self, expert, epoch)
        gets.append((expert, epoch, out.clone()))
        return out

    def spy_rollout(student, start, *args, **kwargs):
        starts.append(start.detach().clone())
        return original_rollout(student, start, *args, **kwargs)

    monkeypatch.setattr(ExpertBuffer, "get", spy_get)
    monkeypatch.setattr(tm_mod, "student_rollout", spy_rollout)
    res = method.run(digits3, 3, 0, CPU)
    check_output(res, 3)

    buf = method.buffer(digits3)
    for i in range(2):  # the stored trajectory: epoch 0 = the expert's init, the loss decreases
        traj = [buf.load(i, e) for e in range(5)]
        assert traj[4]["train_loss"] < traj[1]["train_loss"]
        assert not torch.equal(traj[0]["params"], traj[1]["params"])
    assert len(gets) == 2 * 6 and len(starts) == 6
    for k in range(6):  # what the student starts from / aims at is exactly what is stored
        (e_s, t_s, start), (e_t, t_t, target) = gets[2 * k], gets[2 * k + 1]
        assert e_s == e_t and t_t == t_s + 2 and 0 <= t_s < 2
        assert torch.equal(start, torch.load(buf.path(e_s, t_s), weights_only=True)["params"])
        assert torch.equal(target, torch.load(buf.path(e_t, t_t), weights_only=True)["params"])
        assert torch.equal(starts[k], start)


def test_tm_student_to_expert_distance_decreases(digits3):
    init = TM(**TM_KW, iterations=0).run(digits3, 3, 0, CPU)
    method = TM(**TM_KW, iterations=25)
    res = method.run(digits3, 3, 0, CPU)
    pairs = [(0, 0), (0, 1), (1, 0), (1, 1)]
    before = trajectory_distance(method, digits3, init.images, init.labels, 0.01, pairs)
    after = trajectory_distance(method, digits3, res.images, res.labels, res.meta["syn_lr"], pairs)
    assert after < 0.6 * before
    assert res.meta["syn_lr"] != 0.01 and res.meta["expert_final_train_loss"] < 1.1


def test_tm_rejects_start_epochs_beyond_the_experts(digits3):
    with pytest.raises(MethodError):
        TM(**{**TM_KW, "max_start_epoch": 4}, iterations=1).run(digits3, 2, 0, CPU)


# ---------------------------------------------------------------------------------- registry
def test_plugin_registers_the_condensation_methods():
    from dcrobench_plugins.condensation.plugin import register_methods

    classes = register_methods()
    assert sorted(c.name for c in classes) == ["dm", "gm", "guard", "idm", "mat", "tm"]
    for c in classes:
        assert c.kind == "condensation" and c.uses_seed
        c(**c.default_params)  # every default is an accepted parameter


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("cls,kw", [(DM, {"iterations": 3, "batch_real": 10}),
                                    (GM, {"iterations": 1, "outer_loop": 2, "inner_loop": 1, "batch_real": 10}),
                                    (TM, {**TM_KW, "iterations": 2}),
                                    (IDM, {"iterations": 3, "batch_real": 10, "net_num": 2, "trained_bs": 16}),
                                    (MAT, {**TM_KW, "iterations": 2, "adv_steps": 2}),
                                    (GUARD, {**TM_KW, "iterations": 2})])
def test_runs_on_cuda(digits3, cls, kw):
    res = cls(**{**NET, **kw}).run(digits3, 2, 0, torch.device("cuda"))
    check_output(res, 2)
