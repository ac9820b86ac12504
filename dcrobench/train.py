"""Training loops: standard, PGD-adversarial, and weighted (generalized, paper Def. 5)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .attacks import pgd
from .errors import TrainingDivergedError
from .progress import bar
from .protocol import AdversarialSettings, TrainSettings


@dataclass(frozen=True)
class AdversarialTarget:
    """What adversarial training attacks: the norm and one radius per training sample."""

    norm: str
    eps: torch.Tensor  # [N]
    settings: AdversarialSettings


def _optimizer(model: nn.Module, lr: float, s: TrainSettings) -> torch.optim.Optimizer:
    return torch.optim.SGD(model.parameters(), lr=lr, momentum=s.momentum, weight_decay=s.weight_decay)


def train(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, settings: TrainSettings, *,
          weights: torch.Tensor | None = None, adversarial: AdversarialTarget | None = None,
          seed: int, device: torch.device, progress: bool | None = None, desc: str = "train") -> dict:
    """Train ``model`` in place with SGD; returns the per-epoch mean loss.

    ``weights`` (one per sample) are rescaled to mean 1 over the training set and turn the loss into
    sum_b w_b l_b / B, so a minibatch estimates (1/|T|) sum_S q l as in Def. 5, or into sum_b w_b l_b
    where ``settings.weighted_loss`` is ``batch-sum`` (the authors' code: ``(CE(reduction='none') @ w).mean()``).
    ``adversarial`` replaces each input by its PGD adversary within that sample's radius.
    ``progress``: the epoch bar, as ``dcrobench.progress.bar`` draws it (None: only on a terminal).

    The other SGD loops of the benchmark (the coreset proxy, the condensation networks) are not
    this one; each says why where it lives (``train_proxy_with_trace``, ``condensation.common.train_epoch``,
    ``condensation.tm.student_rollout``).
    """
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    n = labels.shape[0]
    images, labels = images.to(device), labels.to(device)
    w = None
    if weights is not None:
        w = (weights.float() / weights.float().mean()).to(device)
    eps = adversarial.eps.to(device) if adversarial is not None else None
    lr = settings.adversarial_lr if adversarial is not None else settings.lr
    batch_sum = w is not None and settings.weighted_loss == "batch-sum"
    attack = adversarial.settings.for_norm(adversarial.norm) if adversarial is not None else None
    opt = _optimizer(model, lr, settings)
    steps_per_epoch = math.ceil(n / settings.batch_size)
    total = settings.epochs * steps_per_epoch
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, total) if settings.schedule == "cosine" else None
    history: list[float] = []
    model.to(device)
    epochs = bar(range(settings.epochs), desc=desc, enabled=progress)
    for epoch in epochs:
        perm = torch.randperm(n, generator=gen).to(device)
        total_loss = torch.zeros((), device=device)
        for start in range(0, n, settings.batch_size):
            b = perm[start:start + settings.batch_size]
            x, y = images[b], labels[b]
            if adversarial is not None:
                model.eval()
                x = pgd(model, x, y, norm=adversarial.norm, eps=eps[b], steps=attack.steps, step_size=attack.step_size,
                        random_start=attack.random_start, clip=attack.clip)
            model.train()
            losses = F.cross_entropy(model(x), y, reduction="none")
            if w is None:
                loss = losses.mean()
            elif settings.weighted_loss == "batch-sum":
                loss = (losses * w[b]).sum()
            else:
                loss = (losses * w[b]).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if sched is not None:
                sched.step()
            total_loss += loss.detach() * (1 if batch_sum else b.numel())
        epoch_loss = float(total_loss) / n  # one device sync per epoch, not per step
        if not math.isfinite(epoch_loss):
            raise TrainingDivergedError(
                f"{desc}: the training loss became {epoch_loss} in epoch {epoch + 1} (lr {lr}); "
                "lower the learning rate in the protocol (train.lr, train.adv_lr or train_overrides)"
            )
        history.append(epoch_loss)
        epochs.set_postfix(loss=f"{history[-1]:.3f}")
    model.eval()
    return {"loss_per_epoch": history}
