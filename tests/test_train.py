import dataclasses

import pytest
import torch

from dcrobench.errors import TrainingDivergedError
from dcrobench.methods import CompressedSet
from dcrobench_plugins.models import build_mlp
from dcrobench.protocol import AdversarialSettings, TrainSettings, protocol_from_dict
from dcrobench.runner import adversarial_radius
from dcrobench.train import AdversarialTarget, train
from tests.helpers import blobs

CPU = torch.device("cpu")


def _model(seed=0):
    torch.manual_seed(seed)
    return build_mlp(1, 4, 3, (0.5,), (0.5,), hidden=8)


def _params(m):
    return torch.cat([p.detach().flatten() for p in m.parameters()])


def test_nan_loss_is_a_clear_error():
    data = blobs()
    with pytest.raises(TrainingDivergedError, match=r"loss became nan in epoch 1 .*lower the learning rate"):
        train(_model(), data.images * float("nan"), data.labels, TrainSettings(epochs=2, batch_size=8), seed=0,
              device=CPU, progress=False)


def test_weighted_loss_equals_training_on_duplicated_points():
    data = blobs(per_class=4)
    w = torch.tensor([1.0, 2.0, 3.0, 1.0] * 3)
    s = TrainSettings(epochs=1, batch_size=1000, lr=0.1, momentum=0.0, weight_decay=0.0)
    a = _model()
    train(a, data.images, data.labels, s, weights=w, seed=0, device=CPU, progress=False)
    rep = w.long()
    b = _model()
    train(b, data.images.repeat_interleave(rep, 0), data.labels.repeat_interleave(rep, 0), s, seed=0, device=CPU, progress=False)
    assert torch.allclose(_params(a), _params(b), atol=1e-6)


def test_adversarial_training_with_zero_radius_is_standard_training():
    data = blobs()
    s = TrainSettings(epochs=2, batch_size=8, lr=0.05)
    a, b = _model(), _model()
    train(a, data.images, data.labels, s, seed=3, device=CPU, progress=False)
    train(b, data.images, data.labels, s, seed=3, device=CPU, progress=False,
          adversarial=AdversarialTarget("linf", torch.zeros(len(data)), AdversarialSettings()))
    assert torch.allclose(_params(a), _params(b), atol=1e-6)


def test_adversarial_training_uses_adv_lr_and_changes_the_model():
    data = blobs()
    s = TrainSettings(epochs=2, batch_size=8, lr=0.05, adv_lr=0.0)
    m = _model()
    before = _params(m).clone()
    train(m, data.images, data.labels, s, seed=0, device=CPU, progress=False,
          adversarial=AdversarialTarget("l2", torch.full((len(data),), 0.3), AdversarialSettings()))
    assert torch.allclose(_params(m), before)  # adv_lr = 0 froze it: the adversarial lr is the one used


def test_generalized_radius_is_eps_plus_eta_of_the_class_only_when_asked():
    labels = torch.tensor([0, 1, 2, 1])
    comp = CompressedSet(torch.zeros(4, 1, 2, 2), labels, weights=torch.ones(4),
                         extra_radius=torch.tensor([0.5, 1.0, 2.0])[labels], extra_radius_norm="l2")
    base = protocol_from_dict({"name": "x", "version": 1})
    radius, info = adversarial_radius(comp, base, "l2", 0.1)
    assert torch.allclose(radius, torch.full((4,), 0.1)) and info == {"radius": "eps", "weighted": True}
    gen = dataclasses.replace(base, adversarial=AdversarialSettings(weighted_radius="eps+eta"))
    radius, info = adversarial_radius(comp, gen, "l2", 0.1)
    assert torch.allclose(radius, torch.tensor([0.6, 1.1, 2.1, 1.1])) and info["radius"] == "eps+eta"
    radius, info = adversarial_radius(comp, gen, "linf", 0.1)  # eta is an l2 radius: not added to an l-inf ball
    assert torch.allclose(radius, torch.full((4,), 0.1)) and "trained with eps" in info["note"]
