"""dcrobench.proxy: settings, seeded cached training, closed-form last-layer gradients."""

import pytest
import torch
import torch.nn.functional as F

from dcrobench_plugins.coresets import proxy as proxy_mod
from dcrobench.errors import ProtocolError
from dcrobench.imageset import ImageSet
from dcrobench_plugins.coresets.proxy import (
    ProxySettings,
    embeddings,
    gradient_distances,
    gradient_gram,
    last_layer_factors,
    last_layer_gradients,
    train_proxy,
    train_proxy_with_trace,
)

MLP = {"model": "mlp", "model_params": {"hidden": 16, "layers": 1}, "epochs": 3, "batch_size": 8, "lr": 0.05}


def tiny_set(n_per_class=10, classes=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(classes).repeat_interleave(n_per_class)
    images = torch.rand(labels.numel(), 1, 4, 4, generator=g) * 0.5
    images[:, 0, 0, :] += labels[:, None].float() / (2 * classes)  # a learnable signal
    return ImageSet(images.clamp(0, 1), labels, classes, "tiny")


def test_settings_defaults_unknown_and_hash():
    assert ProxySettings.from_dict(None) == ProxySettings()
    s = ProxySettings.from_dict(MLP)
    assert s.model == "mlp" and s.epochs == 3 and s.model_params == {"hidden": 16, "layers": 1}
    assert hash(s) == hash(ProxySettings.from_dict(dict(MLP)))
    assert {s: 1}[ProxySettings.from_dict(dict(MLP))] == 1
    with pytest.raises(ProtocolError, match="proxy: unknown key 'epoch'.*epochs"):
        ProxySettings.from_dict({"epoch": 3})
    with pytest.raises(ProtocolError, match="proxy.lr: must be greater than 0"):
        ProxySettings.from_dict({"lr": 0})
    with pytest.raises(ProtocolError, match="proxy.epochs: expected an integer"):
        ProxySettings.from_dict({"epochs": "ten"})
    with pytest.raises(ValueError, match="unknown proxy model 'nope'"):
        train_proxy(tiny_set(), {**MLP, "model": "nope"}, 0, "cpu")


def test_seeded_training_is_reproducible():
    data = tiny_set()
    s = ProxySettings.from_dict(MLP)
    a, ta = train_proxy_with_trace(data, s, 3, "cpu", use_cache=False)
    b, tb = train_proxy_with_trace(data, s, 3, "cpu", use_cache=False)
    c, _ = train_proxy_with_trace(data, s, 4, "cpu", use_cache=False)
    for k, v in a.state_dict().items():
        assert torch.equal(v, b.state_dict()[k])
    assert torch.equal(ta, tb) and ta.shape == (3, len(data)) and ta.dtype == torch.bool
    assert not torch.equal(a.classifier.weight, c.classifier.weight)


def test_cache_hit_returns_identical_weights_without_training(monkeypatch):
    data = tiny_set()
    calls = []
    first = train_proxy(data, MLP, 0, "cpu", on_epoch=lambda e, m, c: calls.append((e, c.clone())))
    assert [e for e, _ in calls] == [0, 1, 2]

    class NoTraining:
        def __init__(self, *a, **k):
            raise AssertionError("a cache hit must not train")

    monkeypatch.setattr(proxy_mod.torch.optim, "SGD", NoTraining)
    replay = []
    second = train_proxy(data, MLP, 0, "cpu", on_epoch=lambda e, m, c: replay.append((e, m, c)))
    for k, v in first.state_dict().items():
        assert torch.equal(v, second.state_dict()[k])
    assert [e for e, _, _ in replay] == [0, 1, 2] and all(m is None for _, m, _ in replay)
    assert all(torch.equal(c, r) for (_, c), (_, _, r) in zip(calls, replay))
    with pytest.raises(AssertionError, match="cache hit"):  # other settings -> other key -> trains
        train_proxy(data, {**MLP, "epochs": 2}, 0, "cpu")


def test_trace_records_presentation_correctness():
    # lr = 0: the model never changes, so each presentation's correctness is the model's prediction.
    data = tiny_set()
    model, trace = train_proxy_with_trace(data, {**MLP, "lr": 1e-30, "weight_decay": 0.0, "momentum": 0.0},
                                          1, "cpu", use_cache=False)
    with torch.no_grad():
        pred = model(data.images).argmax(1) == data.labels
    assert all(torch.equal(trace[t], pred) for t in range(trace.shape[0]))


def test_last_layer_gradients_equal_autograd_per_sample():
    data = tiny_set(n_per_class=3)
    model = train_proxy(data, MLP, 0, "cpu")
    grads = last_layer_gradients(model, data.images, data.labels, "cpu", batch_size=4)
    lin = model.classifier
    assert grads.shape == (len(data), lin.out_features * (lin.in_features + 1))
    for i in range(len(data)):
        model.zero_grad()
        F.cross_entropy(model(data.images[i:i + 1]), data.labels[i:i + 1]).backward()
        expected = torch.cat([lin.weight.grad, lin.bias.grad[:, None]], dim=1).flatten()
        torch.testing.assert_close(grads[i], expected, rtol=1e-4, atol=1e-6)
    emb, resid = last_layer_factors(model, data.images, data.labels, "cpu")
    torch.testing.assert_close(emb, model.embed(data.images).detach())
    torch.testing.assert_close(embeddings(model, data.images, "cpu", batch_size=2), emb)
    torch.testing.assert_close(resid.sum(1), torch.zeros(len(data)), atol=1e-6, rtol=0)
    # kernel and distances from the factors equal those of the explicit gradients
    g = grads.double()
    torch.testing.assert_close(gradient_gram(emb.double(), resid.double(), emb.double(), resid.double()), g @ g.T)
    torch.testing.assert_close(gradient_distances(emb.double(), resid.double(), block=4), torch.cdist(g, g),
                               atol=1e-6, rtol=1e-6)
