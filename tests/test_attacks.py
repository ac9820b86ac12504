import math

import pytest
import torch

from dcrobench.attacks import BUILTIN_ATTACKS, check_perturbation, evaluate_robustness, l2_epsilon, pgd
from dcrobench.datasets import BUILTIN_DATASETS, load_dataset, stratified_subset
from dcrobench.models import build_mlp
from dcrobench.protocol import EvalSettings, TrainSettings
from dcrobench.train import train

ATTACKS = {a.name: a for a in BUILTIN_ATTACKS}
SETTINGS = EvalSettings(apgd_iterations=10, pgd_steps=10, batch_size=200)


def test_l2_epsilon_matches_the_paper():
    assert l2_epsilon(0.1, 784) == pytest.approx(1.36, abs=0.005)  # MNIST
    assert l2_epsilon(8 / 255, 3 * 32 * 32) == pytest.approx(0.84, abs=0.005)  # CIFAR
    assert l2_epsilon(1.0, 10) == pytest.approx(math.sqrt(20 / (math.pi * math.e)))


@pytest.fixture(scope="module")
def trained():
    spec = next(d for d in BUILTIN_DATASETS if d.name == "digits")
    tr, te = load_dataset(spec, None, False)
    torch.manual_seed(0)
    model = build_mlp(1, 8, 10, spec.mean, spec.std)
    train(model, tr.images, tr.labels, TrainSettings(epochs=8, batch_size=64, lr=0.1), seed=0,
          device=torch.device("cpu"), progress=False)
    te = stratified_subset(te, 200)
    return model.eval(), te.images, te.labels


@pytest.mark.parametrize("norm,eps", [("linf", 0.1), ("l2", l2_epsilon(0.1, 64))])
def test_worst_case_is_below_each_attack_and_apgd_beats_clean(trained, norm, eps):
    model, x, y = trained
    attacks = [ATTACKS[n] for n in ("pgd", "apgd-ce", "apgd-dlr")]
    res = evaluate_robustness(model, x, y, norm=norm, eps=eps, attacks=attacks, settings=SETTINGS, seed=0,
                              device=torch.device("cpu"))
    assert res["clean_acc"] > 0.8
    for name, acc in res["attacks"].items():
        assert res["robust_acc"] <= acc <= res["clean_acc"], name
    assert res["autoattack_acc"] <= min(res["attacks"]["apgd-ce"], res["attacks"]["apgd-dlr"])
    assert res["robust_acc"] <= res["autoattack_acc"]
    assert res["attacks"]["apgd-ce"] < res["clean_acc"] - 0.1
    assert res["attacks"]["apgd-dlr"] < res["clean_acc"] - 0.1


@pytest.mark.parametrize("name", ["pgd", "apgd-ce", "apgd-dlr"])
@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_perturbations_stay_in_the_ball_and_the_box(trained, name, norm):
    model, x, y = trained
    x, y = x[:50], y[:50]
    eps = 0.1 if norm == "linf" else 0.5
    adv = ATTACKS[name].run(model, x, y, norm=norm, eps=eps, settings=SETTINGS, seed=0)
    delta = (adv - x).flatten(1)
    size = delta.abs().amax(1) if norm == "linf" else delta.norm(dim=1)
    assert (size <= eps * (1 + 1e-4) + 1e-6).all()
    assert adv.min() >= 0 and adv.max() <= 1
    assert (size > 0).any()  # it did move


def test_pgd_honours_a_radius_per_sample(trained):
    model, x, y = trained
    x, y = x[:40], y[:40]
    eps = torch.linspace(0.0, 0.2, 40)
    adv = pgd(model, x, y, norm="linf", eps=eps, steps=5, step_size=0.25)
    size = (adv - x).flatten(1).abs().amax(1)
    assert (size <= eps + 1e-6).all()
    assert size[0] == 0


def test_an_attack_leaving_the_threat_model_is_refused():
    x = torch.full((2, 1, 2, 2), 0.5)
    with pytest.raises(RuntimeError, match="outside"):
        check_perturbation(x + 0.2, x, "linf", 0.1, "bad")
    with pytest.raises(RuntimeError, match="outside"):
        check_perturbation(x * 3, x, "l2", 10.0, "bad")
