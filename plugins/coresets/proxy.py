"""The proxy model coreset methods use for embeddings, last-layer gradients and training traces.

A proxy is a model from ``dcrobench.models.BUILTIN_MODELS`` trained on the full training set with
plain SGD + cross-entropy (constant learning rate, no augmentation) for a few epochs under
``ProxySettings`` (the protocol's ``proxy:`` block). It is cached on disk by
``content_key(data fingerprint, settings, seed)``; the cache entry holds the weights and the
training trace (the correctness of every example each time a minibatch presented it, which is what
forgetting-event counting needs), so a second call never retrains.

Last-layer gradients use the closed form: for logits ``z = W e + b`` and cross-entropy, the
gradient with respect to ``(W, b)`` of example ``i`` is ``(p_i - y_i) ⊗ [e_i, 1]``. Methods can
work with the two factors (``last_layer_factors``) and their kernel
``<g_i, g_j> = <r_i, r_j> (<e_i, e_j> + 1)`` without materialising the gradients.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from dcrobench.cache import cache_dir, content_key, report_damaged, torch_bytes, torch_entry, write_entry
from dcrobench.costs import note_shared
from dcrobench.errors import TrainingDivergedError
from dcrobench.imageset import ImageSet
from dcrobench.progress import bar
from dcrobench.protocol import at_least, parse_settings

PROXY_FORMAT_VERSION = 3  # 3: entries sealed with their key (dcrobench.cache); 2: the entry records its training seconds

OnEpoch = Callable[[int, "nn.Module | None", torch.Tensor], None]


@dataclass(frozen=True)
class ProxySettings:
    """How the proxy model is built and trained (the protocol's ``proxy:`` block)."""

    model: str = "convnet"
    model_params: dict[str, Any] = field(default_factory=dict)
    epochs: int = at_least(1, default=10)
    batch_size: int = at_least(1, default=128)
    lr: float = at_least(0, default=0.01, exclusive=True)
    momentum: float = at_least(0, default=0.9, below=1)
    weight_decay: float = at_least(0, default=5e-4)

    def __post_init__(self) -> None:
        # A private copy so the frozen settings cannot change through the caller's dict.
        object.__setattr__(self, "model_params", dict(self.model_params or {}))

    def __hash__(self) -> int:  # frozen dataclass with a dict field: hash the content
        return hash(self.key())

    def to_dict(self) -> dict[str, Any]:
        return {f.name: (dict(getattr(self, f.name)) if f.name == "model_params" else getattr(self, f.name))
                for f in dataclasses.fields(self)}

    def key(self) -> str:
        return content_key("proxy-settings", self.to_dict())

    def replace(self, **changes: Any) -> ProxySettings:
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_dict(cls, d: ProxySettings | dict[str, Any] | None) -> ProxySettings:
        """``None`` -> defaults; the protocol's own checks (unknown keys with near matches, types, ranges)."""
        if isinstance(d, ProxySettings):
            return d
        return parse_settings(cls, d, "proxy")


def build_model(settings: ProxySettings, data: ImageSet) -> nn.Module:
    from dcrobench_plugins.models import BUILTIN_MODELS

    specs = {spec.name: spec for spec in BUILTIN_MODELS}
    if settings.model not in specs:
        raise ValueError(f"unknown proxy model '{settings.model}'; available: {', '.join(sorted(specs))}")
    channels, height, _width = data.shape
    mean, std = data.channel_stats()
    return specs[settings.model].build(channels, height, data.num_classes, mean, std, **settings.model_params)


def _batches(order: torch.Tensor, batch_size: int) -> list[torch.Tensor]:
    chunks = list(order.split(batch_size))
    # A final minibatch of one example breaks batch norm in train mode: merge it into the previous one.
    if len(chunks) > 1 and chunks[-1].numel() == 1:
        last = chunks.pop()
        chunks[-1] = torch.cat([chunks[-1], last])
    return chunks


def proxy_cache_path(data: ImageSet, settings: ProxySettings, seed: int):
    key = content_key("proxy", PROXY_FORMAT_VERSION, data.fingerprint(), settings.to_dict(), int(seed))
    return cache_dir("proxy") / f"{settings.model}-{key}.pt"


def train_proxy_with_trace(data: ImageSet, settings: ProxySettings, seed: int, device: torch.device | str, *,
                           on_epoch: OnEpoch | None = None, use_cache: bool = True,
                           progress: bool | None = None) -> tuple[nn.Module, torch.Tensor]:
    """Train (or load) the proxy; returns ``(model in eval mode on device, trace BoolTensor[epochs, N])``.

    ``trace[t, i]`` is whether example ``i`` was classified correctly by the training forward pass
    of the minibatch that presented it in epoch ``t`` (before that minibatch's update), which is
    how Toneva et al. (2019) record accuracy for forgetting events. ``on_epoch(epoch, model,
    correct)`` is called after every epoch; on a cache hit the recorded trace is replayed with
    ``model=None`` (intermediate weights are not stored). ``progress`` switches the epoch bar
    (``dcrobench.progress.bar``: True, False, None = only on a terminal).
    """
    device = torch.device(device)
    settings = ProxySettings.from_dict(settings) if not isinstance(settings, ProxySettings) else settings
    path = proxy_cache_path(data, settings, seed)

    def seeded_model() -> nn.Module:
        # Seeded initialisation without disturbing the caller's global RNG state.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(seed))
            return build_model(settings, data).to(device)

    started = time.perf_counter()
    if use_cache and path.exists():
        try:
            payload = torch_entry(path, path.stem, map_location=device)
            model = seeded_model()
            model.load_state_dict(payload["state_dict"])
            trace = payload["trace"]
            if not isinstance(trace, torch.Tensor) or trace.dtype != torch.bool or trace.ndim != 2 \
                    or trace.shape != (settings.epochs, len(data)):
                raise ValueError(f"its trace is not [{settings.epochs}, {len(data)}] booleans")
            trace = trace.cpu()
            model.eval()
            train_s = payload["train_s"]
            if isinstance(train_s, bool) or not isinstance(train_s, (int, float)) or not 0 <= train_s < float("inf"):
                raise ValueError("its training seconds are not a finite non-negative number")
            note_shared(float(train_s), started)
            if on_epoch is not None:
                for t in range(trace.shape[0]):
                    on_epoch(t, None, trace[t])
            return model, trace
        except Exception as exc:  # corrupt or stale entry: retrain and overwrite
            report_damaged(path, exc)

    # This is not dcrobench.train.train (the protocol's loop) and cannot be without moving the proxy's
    # numbers, and with them every proxy-based selection and its cache entries: it records each
    # example's correctness from the forward pass of the minibatch that presents it (the trace);
    # it merges a final one-example minibatch into the previous one (batch norm); its loss is
    # cross-entropy's own mean (train's is the mean of per-sample losses, for weights: other bits);
    # its order comes from seed + 7919 with the global RNG untouched (train seeds both); and it
    # stops at the first non-finite minibatch loss, before that step.
    n = len(data)
    model = seeded_model()
    gen = torch.Generator().manual_seed(int(seed) + 7919)
    images = data.images.to(device)
    labels = data.labels.to(device)
    opt = torch.optim.SGD(model.parameters(), lr=settings.lr, momentum=settings.momentum,
                          weight_decay=settings.weight_decay)
    trace = torch.zeros(settings.epochs, n, dtype=torch.bool)
    epochs = bar(range(settings.epochs), desc=f"proxy {settings.model} seed {seed}", enabled=progress)
    for epoch in epochs:
        model.train()
        order = torch.randperm(n, generator=gen)
        correct = torch.zeros(n, dtype=torch.bool, device=device)
        total_loss = 0.0
        for idx_cpu in _batches(order, settings.batch_size):
            idx = idx_cpu.to(device)
            logits = model(images[idx])
            loss = F.cross_entropy(logits, labels[idx])
            if not torch.isfinite(loss):
                raise TrainingDivergedError(
                    f"proxy training diverged (loss {loss.item()}) in epoch {epoch}; lower the proxy lr ({settings.lr})")
            correct[idx] = logits.argmax(1) == labels[idx]
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total_loss += loss.item() * idx.numel()
        trace[epoch] = correct.cpu()
        epochs.set_postfix(loss=f"{total_loss / n:.3f}", acc=f"{trace[epoch].float().mean():.3f}")
        if on_epoch is not None:
            on_epoch(epoch, model, trace[epoch])
    model.eval()
    train_s = time.perf_counter() - started
    note_shared(train_s, started)
    if use_cache:
        state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
        write_entry(path, path.stem, torch_bytes({"format_version": PROXY_FORMAT_VERSION, "state_dict": state,
                                                  "trace": trace, "settings_key": settings.key(), "train_s": train_s}))
    return model, trace


def train_proxy(data: ImageSet, settings: ProxySettings | dict | None, seed: int, device: torch.device | str, *,
                on_epoch: OnEpoch | None = None, progress: bool | None = None) -> nn.Module:
    """The trained proxy model (eval mode, on ``device``); cached by (data, settings, seed)."""
    settings = ProxySettings.from_dict(settings)
    model, _trace = train_proxy_with_trace(data, settings, seed, device, on_epoch=on_epoch, progress=progress)
    return model


@torch.no_grad()
def embeddings(model: nn.Module, images: torch.Tensor, device: torch.device | str, batch_size: int = 512) -> torch.Tensor:
    """Penultimate features ``[N, D]`` (``model.embed``), eval mode, on ``device``."""
    device = torch.device(device)
    model.eval()
    out = [model.embed(images[i:i + batch_size].to(device)).flatten(1) for i in range(0, images.shape[0], batch_size)]
    return torch.cat(out) if out else torch.zeros(0, 0, device=device)


@torch.no_grad()
def logit_residuals(model: nn.Module, emb: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """``softmax(classifier(emb)) - onehot(y)`` ``[N, C]`` from embeddings already computed."""
    lin = model.classifier
    emb = emb.to(lin.weight.device, lin.weight.dtype)
    resid = torch.softmax(lin(emb), dim=1)
    resid[torch.arange(resid.shape[0], device=resid.device), labels.to(resid.device)] -= 1.0
    return resid


@torch.no_grad()
def last_layer_factors(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, device: torch.device | str,
                       batch_size: int = 512) -> tuple[torch.Tensor, torch.Tensor]:
    """``(embedding [N, D], softmax - onehot [N, C])``: the two factors of the last-layer gradients."""
    emb = embeddings(model, images, torch.device(device), batch_size)
    return emb, logit_residuals(model, emb, labels)


def gradients_from_factors(emb: torch.Tensor, resid: torch.Tensor) -> torch.Tensor:
    """``[N, C*(D+1)]``: row ``i`` is ``(resid_i ⊗ [emb_i, 1]).flatten()`` (class-major: W_c then b_c)."""
    ones = torch.ones(emb.shape[0], 1, dtype=emb.dtype, device=emb.device)
    ext = torch.cat([emb, ones], dim=1)
    return (resid.unsqueeze(2) * ext.unsqueeze(1)).flatten(1)


def last_layer_gradients(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, device: torch.device | str,
                         batch_size: int = 512) -> torch.Tensor:
    """Per-sample gradients of CE wrt the last linear layer, ``[N, C*(D+1)]``.

    Row ``i`` reshaped to ``[C, D+1]`` is ``[dL_i/dW | dL_i/db]`` (the weight gradient with the bias
    gradient appended as the last column).
    """
    emb, resid = last_layer_factors(model, images, labels, device, batch_size)
    return gradients_from_factors(emb, resid)


def gradient_gram(emb_a: torch.Tensor, resid_a: torch.Tensor, emb_b: torch.Tensor, resid_b: torch.Tensor) -> torch.Tensor:
    """``<g_i, g_j>`` for last-layer gradients, ``[Na, Nb]``, without materialising them."""
    return (resid_a @ resid_b.T) * (emb_a @ emb_b.T + 1.0)


def gradient_sq_norms(emb: torch.Tensor, resid: torch.Tensor) -> torch.Tensor:
    """``||g_i||^2`` of the last-layer gradients ``[N]``."""
    return resid.pow(2).sum(1) * (emb.pow(2).sum(1) + 1.0)


def gradient_distances(emb: torch.Tensor, resid: torch.Tensor, block: int = 2048) -> torch.Tensor:
    """Pairwise Euclidean distances ``[N, N]`` between last-layer gradients, computed in row blocks."""
    n = emb.shape[0]
    sq = gradient_sq_norms(emb, resid)
    out = torch.empty(n, n, dtype=emb.dtype, device=emb.device)
    for s in range(0, n, block):
        e = slice(s, min(n, s + block))
        gram = gradient_gram(emb[e], resid[e], emb, resid)
        out[e] = (sq[e, None] + sq[None, :] - 2.0 * gram).clamp_min_(0.0).sqrt_()
    out.fill_diagonal_(0.0)
    return out


__all__ = [
    "ProxySettings", "train_proxy", "train_proxy_with_trace", "embeddings", "last_layer_gradients",
    "last_layer_factors", "logit_residuals", "gradients_from_factors", "gradient_gram", "gradient_sq_norms",
    "gradient_distances", "build_model", "proxy_cache_path",
]
