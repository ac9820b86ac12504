"""The attack contract, every registered attack, and equality with the official AutoAttack."""

import math

import pytest
import torch

from dcrobench.attacks import (AttackSet, AttackSpec, ConfiguredAttack, EvalCheckpoint, check_perturbation,
                               configure_attacks, decode_flags, evaluate_robustness, l2_epsilon, pgd)
from dcrobench.datasets import load_dataset, stratified_subset
from dcrobench_plugins.datasets import BUILTIN_DATASETS
from dcrobench.errors import ProtocolError, UnknownNameError
from dcrobench_plugins.models import build_mlp
from dcrobench.protocol import TrainSettings
from dcrobench.registry import registries
from dcrobench.train import train

CPU = torch.device("cpu")
#: settings small enough for CPU tests (the defaults are AutoAttack's: 100 iterations, 5,000 queries)
FAST = {"apgd-ce": {"iterations": 10, "restarts": 1}, "apgd-dlr": {"iterations": 10, "restarts": 1},
        "apgd-t": {"iterations": 5, "targets": 2}, "fab-t": {"iterations": 5, "targets": 2},
        "square": {"queries": 50}, "pgd": {"steps": 10},
        "art-apgd-ce": {"iterations": 10}, "art-apgd-dlr": {"iterations": 10}, "art-square": {"queries": 50},
        "vmi-fgsm": {"samples": 4}, "cw": {"steps": 10}, "transfer-pgd": {"steps": 10}, "deepfool": {"max_iter": 20}}
ATTACK_NAMES = [n for n in registries().attacks.names() if isinstance(registries().attacks.get(n), AttackSpec)]


def configured(*names, blocks=None):
    blocks = FAST if blocks is None else blocks
    return configure_attacks(names, {n: blocks[n] for n in names if n in blocks}, registries().attacks.get)


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
    train(model, tr.images, tr.labels, TrainSettings(epochs=8, batch_size=64, lr=0.1), seed=0, device=CPU, progress=False)
    te = stratified_subset(te, 200)
    return model.eval(), te.images, te.labels


def test_every_attack_of_the_registry_is_listed():
    assert {"pgd", "apgd-ce", "apgd-dlr", "apgd-t", "fab-t", "square"} <= set(ATTACK_NAMES)
    sets = {n: registries().attacks.get(n) for n in ("paper", "standard")}
    assert sets["paper"].members == ("apgd-ce", "apgd-dlr")
    assert sets["standard"].members == ("apgd-ce", "apgd-t", "fab-t", "square")


@pytest.mark.parametrize("name", ATTACK_NAMES)
@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_every_attack_stays_in_the_ball_and_the_box_and_bounds_the_worst_case(trained, name, norm):
    model, x, y = trained
    x, y = x[:60], y[:60]
    eps = 0.1 if norm == "linf" else 0.5
    (attack,) = configured(name)
    extra = {"surrogate": model} if attack.spec.needs_surrogate else {}  # white-box transfer: must break
    adv = attack.spec.build(model, norm=norm, eps=eps, params=attack.params, seed=0, device=CPU, **extra)(x, y)
    if isinstance(adv, tuple):  # a minimal-perturbation attack: (x_adv, size of the smallest perturbation)
        adv, found = adv
        assert found.shape == (x.shape[0],) and (found > 0).all()
    delta = (adv - x).flatten(1)
    size = delta.abs().amax(1) if norm == "linf" else delta.norm(dim=1)
    assert (size <= eps * (1 + 1e-4) + 1e-6).all() and adv.min() >= 0 and adv.max() <= 1
    res = evaluate_robustness(model, x, y, norm=norm, eps=eps, attacks=[attack, *configured("pgd")],
                              mode="independent", batch_size=25, seed=0, device=CPU, **extra)
    for acc in res["attacks"].values():
        assert res["robust_acc"] <= acc <= res["clean_acc"]
    assert res["attacks"][name] < res["clean_acc"] or name.endswith("square")  # it breaks something


@pytest.mark.parametrize("norm,eps", [("linf", 0.1), ("l2", l2_epsilon(0.1, 64))])
def test_cascade_and_independent_modes(trained, norm, eps):
    model, x, y = trained
    attacks = configured("apgd-ce", "apgd-dlr", "pgd")
    ind = evaluate_robustness(model, x, y, norm=norm, eps=eps, attacks=attacks, mode="independent", batch_size=64)
    cas = evaluate_robustness(model, x, y, norm=norm, eps=eps, attacks=attacks, mode="cascade", batch_size=64)
    assert ind["clean_acc"] > 0.8 and ind["attacks"]["apgd-ce"] < ind["clean_acc"] - 0.1
    assert cas["mode"] == "cascade" and ind["mode"] == "independent"
    n = ind["n"]
    flags = {k: decode_flags(v, n) for k, v in cas["flags"].items() if k != "encoding"}
    assert (flags["apgd-dlr"] <= flags["apgd-ce"]).all() and (flags["pgd"] <= flags["apgd-dlr"]).all()  # cumulative
    assert cas["attacks"]["apgd-ce"] == ind["attacks"]["apgd-ce"]  # the first attack sees the same points
    assert cas["robust_acc"] == cas["attacks"]["pgd"] and cas["autoattack_acc"] == cas["attacks"]["apgd-dlr"]
    assert ind["autoattack_acc"] <= min(ind["attacks"]["apgd-ce"], ind["attacks"]["apgd-dlr"])
    assert abs(cas["robust_acc"] - ind["robust_acc"]) <= 0.02  # the same threat, computed two ways


def _direct_autoattack(model, x, y, eps, version, attacks=None, apgd=None):
    from pyautoattack import AutoAttack
    from pyautoattack.autopgd_base import APGDAttack

    aa = AutoAttack(model, attacks=attacks, device="cpu", eps=eps, norm="Linf", seed=0, version=version)
    if apgd is not None:  # constructed with the iterations (setting n_iter afterwards keeps a 100-step schedule)
        aa.apgd = APGDAttack(model, n_iter=apgd["iterations"], n_restarts=apgd["restarts"], eps=eps, norm="Linf",
                             seed=0, device="cpu", eot_iter=1, rho=0.75, logger=aa.logger)
    _, y_adv = aa.run_standard_evaluation(x, y, batch_size=40)
    return y_adv == y


@pytest.mark.parametrize("which", ["paper", "standard"])
def test_robust_flags_equal_a_direct_autoattack_call(trained, which):
    model, x, y = trained
    x, y, eps = x[:100], y[:100], 0.06
    if which == "paper":
        blocks = {"apgd-ce": {"iterations": 20, "restarts": 2}, "apgd-dlr": {"iterations": 20, "restarts": 2}}
        expected = _direct_autoattack(model, x, y, eps, "custom", ["apgd-ce", "apgd-dlr"], blocks["apgd-ce"])
    else:
        blocks = {}
        expected = _direct_autoattack(model, x, y, eps, "standard")
    attacks = configure_attacks((which,), blocks, registries().attacks.get)
    res = evaluate_robustness(model, x, y, norm="linf", eps=eps, attacks=attacks, batch_size=40, seed=0)
    ours = decode_flags(res["flags"][attacks[-1].name], res["n"])
    assert 0 < int(expected.sum()) < int(decode_flags(res["flags"]["clean"], res["n"]).sum())  # a real test
    assert torch.equal(ours, expected)
    assert res["robust_acc"] == res["autoattack_acc"] == int(expected.sum()) / len(y)


class MemoryCheckpoint(EvalCheckpoint):
    def __init__(self):
        self.state = None

    def load(self):
        return None if self.state is None else {k: (dict(v) if isinstance(v, dict) else v) for k, v in self.state.items()}

    def save(self, state):
        self.state = {"clean": state["clean"].clone(), "flags": {k: v.clone() for k, v in state["flags"].items()},
                      "done": dict(state["done"])}


def test_a_killed_evaluation_resumes_where_it_stopped(trained):
    model, x, y = trained
    attacks = configured("apgd-ce", "pgd")
    reference = evaluate_robustness(model, x, y, norm="linf", eps=0.1, attacks=attacks, batch_size=30, seed=0)
    calls, killed = [], []
    real = attacks[0].spec.build

    def counting_build(*a, **k):
        run = real(*a, **k)

        def wrapped(xb, yb):
            calls.append(len(yb))
            if len(calls) == 3 and not killed:
                killed.append(True)
                raise KeyboardInterrupt
            return run(xb, yb)

        return wrapped

    flaky = [ConfiguredAttack(AttackSpec("apgd-ce", counting_build, autoattack=True), attacks[0].params), attacks[1]]
    ckpt = MemoryCheckpoint()
    with pytest.raises(KeyboardInterrupt):
        evaluate_robustness(model, x, y, norm="linf", eps=0.1, attacks=flaky, batch_size=30, seed=0, checkpoint=ckpt)
    assert ckpt.state["done"] == {"apgd-ce": 2}
    calls.clear()
    resumed = evaluate_robustness(model, x, y, norm="linf", eps=0.1, attacks=flaky, batch_size=30, seed=0, checkpoint=ckpt)
    total_batches = math.ceil(round(reference["clean_acc"] * reference["n"]) / 30)
    assert len(calls) == total_batches - 2  # only the batches not done before the kill
    assert resumed["flags"] == reference["flags"]


def test_attack_settings_are_owned_and_validated_by_the_plugin():
    lookup = registries().attacks.get
    with pytest.raises(ProtocolError, match="unknown setting of attack apgd-ce 'iteration'. Did you mean: iterations"):
        configure_attacks(("apgd-ce",), {"apgd-ce": {"iteration": 5}}, lookup)
    with pytest.raises(ProtocolError, match="attacks.apgd-ce.restarts: expected an integer of at least 1"):
        configure_attacks(("apgd-ce",), {"apgd-ce": {"restarts": 0}}, lookup)
    with pytest.raises(ProtocolError, match="p_init"):
        configure_attacks(("square",), {"square": {"p_init": 2.0}}, lookup)
    with pytest.raises(ProtocolError, match="'standard' set runs apgd-ce with its own fixed settings"):
        configure_attacks(("standard",), {"apgd-ce": {"iterations": 5}}, lookup)
    with pytest.raises(ProtocolError, match="does not run"):
        configure_attacks(("pgd",), {"apgd-ce": {"iterations": 5}}, lookup)
    with pytest.raises(UnknownNameError, match="Did you mean: apgd-ce"):
        configure_attacks(("apgd-cee",), {}, lookup)
    with pytest.raises(ProtocolError, match="asked twice with different settings"):
        configure_attacks(("standard", "apgd-ce"), {}, lookup)  # 1 restart in standard, 5 by default
    paper = configure_attacks(("paper",), {}, lookup)
    assert [a.params for a in paper] == [{"iterations": 100, "restarts": 5, "rho": 0.75}] * 2  # AutoAttack's own
    standard = configure_attacks(("standard",), {}, lookup)
    assert standard[0].params["restarts"] == 1 and standard[3].params["queries"] == 5000
    assert isinstance(lookup("standard"), AttackSet)


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


def test_the_stage_store_keeps_an_evaluations_progress_on_disk(trained, tmp_path):
    from dcrobench.stages import StageStore

    model, x, y = trained
    store = StageStore(tmp_path)
    attacks = configured("apgd-ce", "pgd")
    runs = []

    def attack(m, checkpoint):
        runs.append(checkpoint)
        if len(runs) == 1:
            def stop(*a, **k):
                raise KeyboardInterrupt
            checkpoint.save({"clean": torch.ones(len(y), dtype=torch.bool), "flags": {}, "done": {"apgd-ce": 0}})
            stop()
        return evaluate_robustness(m, x, y, norm="linf", eps=0.1, attacks=attacks, batch_size=50, checkpoint=checkpoint)

    with pytest.raises(KeyboardInterrupt):
        store.evaluation("attack-k", lambda: model, attack)
    partial = tmp_path / "attack" / "attack-k.partial.pt"
    assert partial.exists()
    result, cost = store.evaluation("attack-k", lambda: model, attack)
    assert not partial.exists() and not cost.cached
    assert decode_flags(result["flags"]["clean"], len(y)).all()  # the saved progress was used
