"""FGSM, CW, VMI-FGSM, Jitter, DeepFool and transfer PGD: each attack's defining behaviour, and the
protocol's extra attacks recorded per attack (outside the robust score unless asked)."""

import copy

import pytest
import torch
import torch.nn.functional as F
import yaml

import dcrobench
from dcrobench.attacks import decode_flags, evaluate_robustness, pgd
from dcrobench.errors import ProtocolError
from dcrobench.protocol import load_protocol
from dcrobench.registry import registries
from dcrobench.validation import record_errors
from dcrobench_plugins.attacks import classic
from dcrobench_plugins.models import Classifier, Normalize
from tests.helpers import TINY_PROTOCOL
from tests.test_attacks import CPU, configured, trained  # noqa: F401 (fixture)


def spec(name):
    return registries().attacks.get(name)


def build(name, model, norm, eps, **extra):
    (attack,) = configured(name)
    return attack.spec.build(model, norm=norm, eps=eps, params=attack.params, seed=0, device=CPU, **extra)


def input_grad(model, x, y, loss):
    x = x.clone().requires_grad_(True)
    return torch.autograd.grad(loss(model(x), y).sum(), x)[0]


@pytest.mark.parametrize("norm,eps", [("linf", 0.1), ("l2", 0.5)])
def test_fgsm_is_one_full_step_from_the_clean_point(trained, norm, eps):
    model, x, y = trained
    g = input_grad(model, x, y, lambda z, t: F.cross_entropy(z, t, reduction="none"))
    if norm == "linf":
        expected = x + eps * g.sign()
    else:
        expected = x + eps * g / g.flatten(1).norm(dim=1).view(-1, 1, 1, 1)
    adv = build("fgsm", model, norm, eps)(x, y)
    assert torch.allclose(adv, expected.clamp(0, 1), atol=1e-5)
    assert torch.equal(adv, pgd(model, x, y, norm=norm, eps=eps, steps=1, step_size=1.0, random_start=False))


def test_cw_loss_is_the_logit_margin_and_cw_ascends_it(trained):
    logits = torch.tensor([[2.0, 5.0, 1.0], [0.5, -1.0, 3.0]])
    y = torch.tensor([1, 0])
    assert torch.allclose(classic.cw_margin(logits, y), torch.tensor([2.0 - 5.0, 3.0 - 0.5]))
    model, x, y = trained
    with torch.no_grad():
        before = classic.cw_margin(model(x), y)
        after = classic.cw_margin(model(build("cw", model, "linf", 0.1)(x, y)), y)
    assert (after >= before - 1e-5).all() and float(after.mean()) > float(before.mean()) + 1.0
    one = pgd(model, x, y, norm="linf", eps=0.1, steps=1, step_size=1.0, random_start=False, loss=classic.cw_margin)
    g = input_grad(model, x, y, classic.cw_margin)  # the step follows the margin's gradient, not the CE's
    assert torch.allclose(one, (x + 0.1 * g.sign()).clamp(0, 1), atol=1e-6)


def test_vmi_fgsm_reduces_to_fgsm_in_one_step_and_to_mi_fgsm_without_variance(trained):
    model, x, y = trained
    x, y = x[:40], y[:40]
    gen = torch.Generator().manual_seed(0)
    one = classic.vmi_fgsm(model, x, y, norm="linf", eps=0.1, steps=1, decay=1.0, samples=3, beta=1.5, gen=gen)
    assert torch.allclose(one, build("fgsm", model, "linf", 0.1)(x, y), atol=1e-6)
    ce = lambda z, t: F.cross_entropy(z, t, reduction="none")  # noqa: E731
    g, x_mi = torch.zeros_like(x), x.clone()  # MI-FGSM (Dong et al. 2018), written out
    for _ in range(5):
        grad = input_grad(model, x_mi, y, ce)
        g = 1.0 * g + grad / grad.abs().flatten(1).mean(1).view(-1, 1, 1, 1)
        x_mi = torch.min(torch.max(x_mi + 0.02 * g.sign(), x - 0.1), x + 0.1).clamp(0, 1)
    tiny = classic.vmi_fgsm(model, x, y, norm="linf", eps=0.1, steps=5, decay=1.0, samples=3, beta=1e-9, gen=gen)
    assert torch.allclose(tiny, x_mi, atol=1e-5)
    tuned = classic.vmi_fgsm(model, x, y, norm="linf", eps=0.1, steps=5, decay=1.0, samples=3, beta=1.5, gen=gen)
    assert not torch.allclose(tuned, x_mi, atol=1e-3)  # the variance term changes the path


def test_jitter_loss_is_the_noisy_scaled_softmax_error_and_it_breaks_points(trained):
    logits = torch.tensor([[2.0, -4.0, 1.0]])
    y = torch.tensor([0])
    p = torch.softmax(10 * logits / 4.0, 1)
    expected = ((p - torch.tensor([[1.0, 0.0, 0.0]])) ** 2).sum(1)
    assert torch.allclose(classic.jitter_loss(10.0, 0.0, torch.Generator())(logits, y), expected)
    model, x, y = trained
    res = evaluate_robustness(model, x, y, norm="linf", eps=0.1, attacks=configured("jitter"), mode="independent")
    assert res["attacks"]["jitter"] < res["clean_acc"] - 0.2


def test_deepfool_reports_the_exact_minimal_linf_distance_of_a_linear_model():
    g = torch.Generator().manual_seed(2)
    model = Classifier(Normalize([0.0], [1.0]), torch.nn.Flatten(), 16, 3).eval()
    with torch.no_grad():
        model.classifier.weight.copy_(torch.randn(3, 16, generator=g))
        model.classifier.bias.copy_(torch.randn(3, generator=g))
    x = 0.3 + 0.4 * torch.rand(60, 1, 4, 4, generator=g)
    with torch.no_grad():
        y = model(x).argmax(1)  # every point correct: DeepFool runs on all of them
    w, b = model.classifier.weight.detach().double(), model.classifier.bias.detach().double()
    f = x.flatten(1).double() @ w.T + b
    exact = torch.stack([min(abs(f[i, k] - f[i, y[i]]) / (w[k] - w[y[i]]).abs().sum() for k in range(3) if k != y[i])
                         for i in range(60)])
    blocks = {"deepfool": {"max_iter": 5, "overshoot": 0.0001}}
    res = evaluate_robustness(model, x, y, norm="linf", eps=float(exact.median()), attacks=configured("deepfool",
                              blocks=blocks), mode="independent")
    assert res["minimal_perturbation"]["deepfool"] == pytest.approx(float(exact.median()), rel=1e-3)
    assert res["attacks"]["deepfool"] == pytest.approx(0.5, abs=0.05)  # half the points lie within the median


def test_transfer_examples_come_from_the_surrogate_not_the_target(trained):
    surrogate, x, y = trained

    class NoGradients(torch.nn.Module):  # the target: evaluated, never differentiated
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, z):
            if torch.is_grad_enabled() and z.requires_grad:
                raise AssertionError("a transfer attack differentiated the target model")
            return self.inner(z)

    torch.manual_seed(0)
    target = NoGradients(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10)))
    run = build("transfer-pgd", target, "linf", 0.1, surrogate=surrogate)
    torch.manual_seed(5)
    adv = run(x, y)
    torch.manual_seed(5)
    assert torch.equal(adv, pgd(surrogate, x, y, norm="linf", eps=0.1, steps=10, step_size=0.125, random_start=True))
    with pytest.raises(ValueError, match="surrogate"):
        evaluate_robustness(target, x, y, norm="linf", eps=0.1, attacks=configured("transfer-pgd"))


def extra_protocol(tmp_path, in_score=False):
    raw = yaml.safe_load(open(TINY_PROTOCOL))
    raw["evaluation"]["extra_attacks"] = ["fgsm", "deepfool", "transfer-pgd"]
    if in_score:
        raw["evaluation"]["extra_in_score"] = True
    raw["attacks"].update({"deepfool": {"max_iter": 10}, "transfer-pgd": {"steps": 5}})
    path = tmp_path / f"extra{int(in_score)}.yaml"
    path.write_text(yaml.safe_dump(raw))
    return str(path)


def test_extra_attacks_are_recorded_per_attack_outside_the_score(tmp_path):
    proto = extra_protocol(tmp_path)
    assert load_protocol(proto).hash != load_protocol(TINY_PROTOCOL).hash
    (rec,) = dcrobench.run("random", "digits", budget=5, protocol=proto, seeds=1, results=tmp_path / "r", threads=1)
    assert record_errors(rec.to_json()) == []
    tampered = copy.deepcopy(rec.to_json())
    tampered["adversarial"]["extra_attacks"]["attacks"]["fgsm"] += 0.05  # no longer what its flags say
    assert any("extra_attacks/flags/fgsm" in e for e in record_errors(tampered))
    for ev in (rec.standard, rec.adversarial):
        extra = ev.extra_attacks
        assert set(extra["attacks"]) == {"fgsm", "deepfool", "transfer-pgd"} and not extra["in_score"]
        assert set(ev.attacks) == {"apgd-ce", "apgd-dlr", "pgd"}  # the headline cascade is unchanged
        for name, acc in extra["attacks"].items():
            assert acc <= ev.clean_acc
            assert int(decode_flags(extra["flags"][name], ev.n).sum()) / ev.n == pytest.approx(acc)
        assert extra["minimal_perturbation"]["deepfool"] is None or extra["minimal_perturbation"]["deepfool"] > 0
    df = dcrobench.load_results(tmp_path / "r")
    assert df["adv_extra_fgsm"].iloc[0] == pytest.approx(rec.adversarial.extra_attacks["attacks"]["fgsm"])
    # the surrogate is the full-data adversarially trained model: the `full` run of the cell reuses it
    (full,) = dcrobench.run("full", "digits", protocol=proto, seeds=1, results=tmp_path / "r", threads=1)
    assert full.cost["cached"]["adversarial"]

    scored = extra_protocol(tmp_path, in_score=True)
    (rec2,) = dcrobench.run("random", "digits", budget=5, protocol=scored, seeds=1, results=tmp_path / "r2", threads=1)
    assert record_errors(rec2.to_json()) == []
    worst = min(rec2.adversarial.extra_attacks["attacks"].values())
    assert rec2.scores.robust <= min(worst, rec.scores.robust) + 1e-9
    assert set(rec2.adversarial.attacks) >= {"fgsm", "deepfool", "transfer-pgd"}


def test_bad_extra_attacks_are_refused(tmp_path):
    raw = yaml.safe_load(open(TINY_PROTOCOL))
    raw["evaluation"]["extra_attacks"] = ["pgd"]
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(raw))
    with pytest.raises(ProtocolError, match="extra_attacks"):
        load_protocol(str(tmp_path / "p.yaml"))
    raw["evaluation"]["extra_attacks"] = []
    raw["evaluation"]["extra_in_score"] = True
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(raw))
    with pytest.raises(ProtocolError, match="no extra_attacks"):
        load_protocol(str(tmp_path / "p.yaml"))


def test_the_leaderboard_has_a_per_attack_table():
    from dataclasses import replace

    from dcrobench.aggregate import cells
    from dcrobench.leaderboard import attack_table, publish_markdown
    from tests.helpers import score_record

    def rec(method, seed, rob, fgsm, cw, size):
        r = score_record(method, seed, 0.9, rob)
        extra = {"mode": "independent", "attacks": {"fgsm": fgsm, "cw": cw}, "flags": {}, "in_score": False,
                 "minimal_perturbation": {"deepfool": size}}
        return replace(r, adversarial=replace(r.adversarial, extra_attacks=extra))

    records = [rec("random", 0, 0.2, 0.5, 0.3, 0.1), rec("random", 1, 0.4, 0.7, 0.5, 0.3),
               rec("mcs", 0, 0.3, 0.6, 0.4, None)]
    table = attack_table(cells(records), "linf", "mlp", 50)
    row = next(line for line in table.splitlines() if line.startswith("| random"))
    assert "30.00" in row and "60.00" in row and "40.00" in row and "0.2" in row  # means over the two seeds
    mcs = next(line for line in table.splitlines() if line.startswith("| mcs"))
    assert mcs.rstrip(" |").endswith("–")  # no median where a seed found none
    assert "Per attack (adversarially trained model), linf, mlp, 50 images per class" in publish_markdown(records, "x")
    assert attack_table(cells([score_record("random", 0, 0.9, 0.2)]), "linf", "mlp", 50) is None


def test_the_web_page_shows_the_per_attack_accuracies():
    from dataclasses import replace

    from dcrobench.aggregate import cells
    from dcrobench.webpage import page_rows, visible_columns
    from tests.helpers import score_record

    r = score_record("random", 0, 0.9, 0.2)
    extra = {"mode": "independent", "attacks": {"cw": 0.25}, "flags": {}, "in_score": False}
    r = replace(r, adversarial=replace(r.adversarial, extra_attacks=extra))
    rows = page_rows(cells([r]), [r])
    assert rows[0]["attack:cw"] == 0.25
    col = next(c for c in visible_columns(rows) if c.key == "attack:cw")
    assert col.label == "cw %" and col.format == "pct"
