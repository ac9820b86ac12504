"""MAT, GUARD (robust distillation on trajectory matching) and IDM: their defining behaviour on tiny data."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from dcrobench.errors import MethodError
from dcrobench_plugins.condensation import tm as tm_mod
from dcrobench_plugins.condensation.common import body, build_net
from dcrobench_plugins.condensation.dm import dm_loss
from dcrobench_plugins.condensation.idm import IDM, FeaturesAndLogits, idm_loss
from dcrobench_plugins.condensation.robust_tm import GUARD, MAT, curvature_penalty, pgd_normalized
from dcrobench_plugins.condensation.tm import TM, FlatModel
from tests.test_condensation import CPU, NET, TM_KW, check_output, digits3  # noqa: F401 (fixture)

EXPERTS = {**TM_KW, "lr_teacher": 0.05, "expert_batch": 8}  # experts trained enough to differ
MAT_KW = {**EXPERTS, "adv_eps": 0.1, "adv_step": 0.03, "adv_steps": 3, "ema_decay": 0.9}
GUARD_KW = {**EXPERTS, "curvature_weight": 1000.0, "curvature_h": 1.0}
IDM_KW = {**NET, "batch_real": 10, "lr_img": 1.0, "net_num": 3, "net_generate_interval": 2, "fetch_net_num": 2,
          "model_train_steps": 3, "trained_bs": 32, "lr_net": 0.05, "ce_weight": 0.5, "dsa_strategy": "none"}


def context(method, data, budget=3):
    return method._context(data, budget, 0, CPU)


def final_expert(method, data, expert=0, key="params"):
    buf = method.buffer(data)
    state = buf.load(expert, int(method.params["expert_train_epochs"]))
    model = body(build_net(context(method, data), 0))
    flat = FlatModel(model)
    with torch.no_grad():
        for prm, v in zip(model.parameters(), flat.unflatten(state.get(key, state["params"])).values()):
            prm.copy_(v)
    return model.eval()


def robust_accuracy(method, data, model) -> float:
    ctx = context(method, data)
    x_adv = pgd_normalized(model, ctx.real, ctx.real_labels, ctx, 0.2, 0.05, 10, torch.Generator().manual_seed(0))
    with torch.no_grad():
        return float((model(x_adv).argmax(1) == ctx.real_labels).float().mean())


# ---------------------------------------------------------------------------------- MAT
def test_pgd_in_normalised_space_stays_in_the_pixel_ball_and_raises_the_loss(digits3):
    method = MAT(**MAT_KW, iterations=0)
    ctx = context(method, digits3)
    model = body(build_net(ctx, 0)).eval()
    x, y = ctx.real[:40], ctx.real_labels[:40]
    x_adv = pgd_normalized(model, x, y, ctx, 0.1, 0.03, 5, torch.Generator().manual_seed(1))
    pix, pix_adv = x * ctx.std + ctx.mean, x_adv * ctx.std + ctx.mean
    assert float((pix_adv - pix).abs().max()) <= 0.1 + 1e-5
    assert float(pix_adv.min()) >= -1e-5 and float(pix_adv.max()) <= 1 + 1e-5
    with torch.no_grad():
        assert F.cross_entropy(model(x_adv), y) > F.cross_entropy(model(x), y)


def test_mat_experts_are_adversarially_trained_and_its_matching_loss_falls(digits3):
    tm = TM(**EXPERTS, iterations=0)
    tm.run(digits3, 3, 0, CPU)
    mat = MAT(**MAT_KW, iterations=25)
    res = mat.run(digits3, 3, 0, CPU)
    check_output(res, 3)
    curve = res.meta["loss_curve"]
    assert sum(curve[-5:]) / 5 < sum(curve[:5]) / 5
    assert mat.buffer(digits3).root != tm.buffer(digits3).root
    # same initialisations: the adversarially trained expert resists PGD better than the natural one
    tm_model, mat_model = final_expert(tm, digits3), final_expert(mat, digits3, key="weights")
    assert robust_accuracy(mat, digits3, mat_model) > robust_accuracy(tm, digits3, tm_model) + 0.15
    # its recorded training loss is the adversarial one: above the clean loss of the same weights
    ctx = context(mat, digits3)
    last = mat.buffer(digits3).load(0, 4)
    with torch.no_grad():
        clean = float(F.cross_entropy(mat_model(ctx.real), ctx.real_labels))
    assert last["train_loss"] > clean
    assert "PGD-AT" in res.meta["experts"]


def test_mat_trajectory_is_the_ema_of_the_weights(digits3):
    smooth = MAT(**{**MAT_KW, "num_experts": 1}, iterations=0)
    smooth.run(digits3, 2, 0, CPU)
    state = smooth.buffer(digits3).load(0, 2)
    assert not torch.equal(state["params"], state["weights"])
    raw = MAT(**{**MAT_KW, "num_experts": 1, "ema_decay": 0.0}, iterations=0)  # decay 0: EMA = the weights
    raw.run(digits3, 2, 0, CPU)
    state = raw.buffer(digits3).load(0, 2)
    assert torch.allclose(state["params"], state["weights"])
    with pytest.raises(MethodError, match="ema_decay"):
        MAT(ema_decay=1.0)


@pytest.mark.parametrize("cls,kw", [(TM, TM_KW), (MAT, MAT_KW), (GUARD, GUARD_KW)])
def test_experts_resume_per_epoch(digits3, monkeypatch, tmp_path, cls, kw):
    kw = {**kw, "iterations": 1, "num_experts": 1}
    monkeypatch.setenv("DCROBENCH_CACHE", str(tmp_path / "a"))
    straight = cls(**kw)
    straight.run(digits3, 2, 0, CPU)
    monkeypatch.setenv("DCROBENCH_CACHE", str(tmp_path / "b"))
    calls = {"n": 0}
    original = tm_mod.train_epoch

    def crash_in_epoch_3(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    monkeypatch.setattr(tm_mod, "train_epoch", crash_in_epoch_3)
    with pytest.raises(KeyboardInterrupt):
        cls(**kw).run(digits3, 2, 0, CPU)
    monkeypatch.setattr(tm_mod, "train_epoch", original)
    resumed = cls(**kw)
    resumed.run(digits3, 2, 0, CPU)
    monkeypatch.setenv("DCROBENCH_CACHE", str(tmp_path / "a"))
    for e in range(5):
        assert torch.allclose(straight.buffer(digits3).get(0, e), resumed.buffer(digits3).get(0, e), atol=1e-5)


# ---------------------------------------------------------------------------------- GUARD
def test_curvature_penalty_is_cures_gradient_difference(digits3):
    method = GUARD(**GUARD_KW, iterations=0)
    ctx = context(method, digits3)
    model = body(build_net(ctx, 7)).eval()
    x, y, h = ctx.real[:12], ctx.real_labels[:12], 2.0

    def input_grad(at):  # of the batch-mean cross-entropy, as GUARD's code takes it
        at = at.detach().requires_grad_(True)
        return torch.autograd.grad(F.cross_entropy(model(at), y), at)[0]

    g = input_grad(x)
    z = h * g / g.flatten(1).norm(dim=1).view(-1, 1, 1, 1)
    expected = (input_grad(x + z) - g).flatten(1).norm(dim=1)
    assert torch.allclose(curvature_penalty(model, x, y, h).detach(), expected, rtol=1e-4, atol=1e-9)


def test_guard_regulariser_lowers_the_curvature_of_a_fixed_network_on_a_fixed_set(digits3):
    method = GUARD(**GUARD_KW, iterations=0)
    ctx = context(method, digits3)
    x, y = ctx.real, ctx.real_labels

    def trained(lam):
        model = body(build_net(ctx, 123))  # the same fixed initialisation both times
        opt = torch.optim.SGD(model.parameters(), lr=0.01)
        for _ in range(30):
            loss = F.cross_entropy(model(x), y) + lam * curvature_penalty(model, x, y, 1.0).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        return model

    plain, regularised = trained(0.0), trained(1000.0)
    before = float(curvature_penalty(plain, x, y, 1.0).mean().detach())
    after = float(curvature_penalty(regularised, x, y, 1.0).mean().detach())
    assert after < 0.5 * before, (before, after)


def test_guard_distils_from_curvature_regularised_experts(digits3):
    tm = TM(**EXPERTS, iterations=0)
    tm.run(digits3, 3, 0, CPU)
    guard = GUARD(**GUARD_KW, iterations=25)
    res = guard.run(digits3, 3, 0, CPU)
    check_output(res, 3)
    curve = res.meta["loss_curve"]
    assert sum(curve[-5:]) / 5 < sum(curve[:5]) / 5
    ctx = context(guard, digits3)
    curv = {name: float(curvature_penalty(final_expert(m, digits3), ctx.real, ctx.real_labels, 1.0).mean().detach())
            for name, m in (("tm", tm), ("guard", guard))}
    assert curv["guard"] < 0.7 * curv["tm"], curv
    with pytest.raises(MethodError, match="curvature"):
        GUARD(curvature_h=0)


# ---------------------------------------------------------------------------------- IDM
def test_idm_loss_is_dm_plus_the_weighted_class_aware_cross_entropy(digits3):
    method = IDM(**IDM_KW, iterations=0)
    ctx = context(method, digits3)
    net = build_net(ctx, 5)
    flat = FlatModel(FeaturesAndLogits(net))
    w = torch.cat([p.detach().reshape(-1) for p in flat.model.parameters()])
    real, real_group = ctx.real, ctx.real_labels
    syn, syn_group = ctx.z, ctx.syn_labels
    total, dm_part, ce_part = idm_loss(flat, w, real, real_group, syn, syn_group, 3, ce_scale=7.0)
    assert torch.allclose(dm_part, dm_loss(net.features, real, real_group, syn, syn_group, 3), rtol=1e-5)
    with torch.no_grad():
        logits = net.classifier(net.features(syn))
    per_class = sum(F.cross_entropy(logits[syn_group == c], syn_group[syn_group == c]) for c in range(3))
    assert torch.allclose(ce_part, per_class, rtol=1e-5) and torch.allclose(total, dm_part + 7.0 * ce_part)


def test_idm_trains_its_network_queue_on_real_data_and_matching_falls(digits3):
    res = IDM(**{**IDM_KW, "ce_weight": 0.0}, iterations=40).run(digits3, 3, 0, CPU)
    check_output(res, 3)
    curve = res.meta["loss_curve"]
    assert sum(curve[-5:]) / 5 < sum(curve[:5]) / 5
    assert res.meta["networks_pushed"] == 20 and res.meta["queue_size"] == 3
    assert res.meta["queue_mean_train_acc"] > 0.5  # trained networks, not random ones (chance = 1/3)
    with pytest.raises(MethodError, match="net_num"):
        IDM(net_num=0)


def test_idm_resumes_exactly_with_its_queue(digits3, monkeypatch, tmp_path):
    kw = {**IDM_KW, "iterations": 9, "checkpoint_every": 4}
    monkeypatch.setenv("DCROBENCH_CACHE", str(tmp_path / "a"))
    straight = IDM(**kw).run(digits3, 2, 0, CPU)
    monkeypatch.setenv("DCROBENCH_CACHE", str(tmp_path / "b"))
    original = IDM.step

    def crash_at_6(self, ctx, it):
        if it == 6:
            raise KeyboardInterrupt
        return original(self, ctx, it)

    monkeypatch.setattr(IDM, "step", crash_at_6)
    with pytest.raises(KeyboardInterrupt):
        IDM(**kw).run(digits3, 2, 0, CPU)
    monkeypatch.setattr(IDM, "step", original)
    resumed = IDM(**kw).run(digits3, 2, 0, CPU)
    assert resumed.meta["resumed_from"] == 4
    assert torch.allclose(resumed.images, straight.images, atol=1e-5)
