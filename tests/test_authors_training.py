"""The paper authors' training choices as protocol options: unstandardised inputs, unclipped l_inf PGD, per-norm PGD."""

import pytest
import torch

from dcrobench.attacks import pgd
from dcrobench.errors import ProtocolError
from dcrobench.protocol import TrainSettings, protocol_from_dict
from dcrobench.train import AdversarialTarget, train
from dcrobench_plugins.models import build_mlp


def test_unclipped_pgd_leaves_the_box_only_when_asked():
    torch.manual_seed(0)
    model = build_mlp(1, 4, 3, (0.5,), (0.5,))
    x, y = torch.tensor([[0.0, 1.0] * 8]).view(1, 1, 4, 4).repeat(4, 1, 1, 1), torch.arange(4) % 3
    free = pgd(model, x, y, norm="linf", eps=0.3, steps=3, step_size=1.0, random_start=False, clip=False)
    boxed = pgd(model, x, y, norm="linf", eps=0.3, steps=3, step_size=1.0, random_start=False)
    assert (free < 0).any() or (free > 1).any()  # the authors' pgd_linf never clips x + delta
    assert boxed.min() >= 0 and boxed.max() <= 1
    assert (free - x).abs().max() <= 0.3 + 1e-6 and (boxed - x).abs().max() <= 0.3 + 1e-6


def test_normalize_false_feeds_the_pixels_as_they_are():
    torch.manual_seed(0)
    plain = build_mlp(1, 4, 3, (0.1307,), (0.3081,), normalize=False)
    x = torch.rand(2, 1, 4, 4)
    assert torch.equal(plain.normalize(x), x)
    assert not torch.equal(build_mlp(1, 4, 3, (0.1307,), (0.3081,)).normalize(x), x)
    with pytest.raises(ValueError, match="normalize must be true or false"):
        build_mlp(1, 4, 3, (0.5,), (0.5,), normalize="no")


def test_adversarial_training_attacks_with_the_settings_of_its_norm(monkeypatch):
    import dcrobench.train as train_module

    seen = []

    def spy(model, x, y, **kw):
        seen.append((kw["norm"], kw["steps"], kw["step_size"], kw["random_start"], kw["clip"]))
        return x

    monkeypatch.setattr(train_module, "pgd", spy)
    p = protocol_from_dict({"name": "x", "version": 1, "adversarial": {
        "steps": 20, "step_size": 1.0, "random_start": False, "clip": False,
        "per_norm": {"l2": {"steps": 40, "step_size": 0.07, "clip": True}}}})
    x, y = torch.rand(8, 1, 4, 4), torch.arange(8) % 3
    settings = TrainSettings(epochs=1, batch_size=8, lr=0.1)
    for norm in ("linf", "l2"):
        train(build_mlp(1, 4, 3, (0.5,), (0.5,)), x, y, settings, adversarial=AdversarialTarget(norm, torch.full((8,), 0.1),
              p.adversarial), seed=0, device=torch.device("cpu"))
    assert seen == [("linf", 20, 1.0, False, False), ("l2", 40, 0.07, False, True)]


def test_batch_sum_weighted_loss_is_the_mean_loss_times_the_batch():
    """One SGD step on the authors' batch-summed weighted loss equals the mean loss's step at B times the
    learning rate (no momentum history or weight decay to break the scaling); unweighted sets ignore it."""
    torch.manual_seed(0)
    x, y, w = torch.rand(8, 1, 4, 4), torch.arange(8) % 3, torch.rand(8) + 0.5
    nets = []
    for loss, lr, weights in (("mean", 0.08, w), ("batch-sum", 0.01, w), ("batch-sum", 0.01, None), ("mean", 0.01, None)):
        torch.manual_seed(1)
        net = build_mlp(1, 4, 3, (0.5,), (0.5,))
        settings = TrainSettings(epochs=1, batch_size=8, lr=lr, momentum=0.0, weight_decay=0.0, weighted_loss=loss)
        train(net, x, y, settings, weights=weights, seed=0, device=torch.device("cpu"))
        nets.append(torch.cat([p.detach().flatten() for p in net.parameters()]))
    assert torch.allclose(nets[0], nets[1], atol=1e-6)
    assert torch.equal(nets[2], nets[3])
    torch.manual_seed(1)
    start = torch.cat([p.detach().flatten() for p in build_mlp(1, 4, 3, (0.5,), (0.5,)).parameters()])
    assert not torch.allclose(nets[0], start)  # the step was taken


def test_weighted_loss_counts_in_a_hash_only_when_set():
    base = {"name": "x", "version": 1, "train": {"lr": 0.1}}
    plain = protocol_from_dict(base)
    assert plain.hash_for("random") == protocol_from_dict({**base, "train": {"lr": 0.1, "weighted_loss": "mean"}}).hash_for("random")
    assert "weighted_loss" not in plain.train.content()
    summed = protocol_from_dict({**base, "train_overrides": {"mcs": {"weighted_loss": "batch-sum"}}})
    assert summed.hash_for("random") == plain.hash_for("random")  # only the method it names moves
    assert summed.hash_for("mcs") != plain.hash_for("mcs")
    assert summed.train_for("mcs").weighted_loss == "batch-sum"
    for where in ({"train": {"weighted_loss": "sum"}}, {"train_overrides": {"mcs": {"weighted_loss": "total"}}}):
        with pytest.raises(ProtocolError, match="weighted_loss must be one of mean, batch-sum"):
            protocol_from_dict({**base, **where})
