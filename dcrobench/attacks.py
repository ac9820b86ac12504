"""Attacks: our PGD (training and evaluation) and AutoAttack components from ART.

An ``AttackSpec.run(model, x, y, norm=, eps=, settings=, seed=)`` returns adversarial inputs in
[0, 1] within the eps-ball of ``x``. ``evaluate_robustness`` runs a set of attacks on the same
points and reports each attack's accuracy, the AutoAttack accuracy (pointwise worst case over the
AutoAttack components) and the overall robust accuracy (pointwise worst case over every attack run).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

NORMS = ("linf", "l2")


def l2_epsilon(eps_linf: float, input_dim: int) -> float:
    """Paper §4: eps_2 = sqrt(2n / (pi e)) * eps_inf keeps the l2 and l-inf balls' volumes similar."""
    return math.sqrt(2.0 * input_dim / (math.pi * math.e)) * eps_linf


def _per_sample(eps: float | torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    e = torch.as_tensor(eps, dtype=x.dtype, device=x.device)
    if e.ndim == 0:
        e = e.expand(x.shape[0])
    return e.view(-1, *([1] * (x.ndim - 1)))


def project(x_adv: torch.Tensor, x: torch.Tensor, norm: str, eps: torch.Tensor) -> torch.Tensor:
    """Project onto the eps-ball around x intersected with the [0, 1] box."""
    delta = x_adv - x
    if norm == "linf":
        delta = torch.maximum(torch.minimum(delta, eps), -eps)
    else:
        n = delta.flatten(1).norm(dim=1).view(-1, *([1] * (x.ndim - 1)))
        delta = delta * torch.clamp(eps / n.clamp_min(1e-12), max=1.0)
    return (x + delta).clamp_(0.0, 1.0)


def pgd(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, norm: str, eps: float | torch.Tensor,
        steps: int, step_size: float, random_start: bool = True) -> torch.Tensor:
    """Projected gradient ascent on the cross-entropy (Madry et al.); ``step_size`` is a fraction of eps.

    ``eps`` may be one number or one radius per sample (generalized adversarial training).
    """
    if norm not in NORMS:
        raise ValueError(f"unknown norm '{norm}' (expected one of {NORMS})")
    eps_b = _per_sample(eps, x)
    alpha = step_size * eps_b
    x = x.detach()
    if random_start:
        if norm == "linf":
            delta = (torch.rand_like(x) * 2 - 1) * eps_b
        else:
            d = torch.randn_like(x)
            d = d / d.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, *([1] * (x.ndim - 1)))
            delta = d * eps_b * torch.rand(x.shape[0], *([1] * (x.ndim - 1)), device=x.device, dtype=x.dtype)
        x_adv = (x + delta).clamp(0.0, 1.0)
    else:
        x_adv = x.clone()
    for _ in range(steps):
        x_adv.requires_grad_(True)
        loss = F.cross_entropy(model(x_adv), y, reduction="sum")
        (grad,) = torch.autograd.grad(loss, x_adv)
        with torch.no_grad():
            if norm == "linf":
                x_adv = x_adv + alpha * grad.sign()
            else:
                g = grad.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, *([1] * (x.ndim - 1)))
                x_adv = x_adv + alpha * grad / g
            x_adv = project(x_adv, x, norm, eps_b)
    return x_adv.detach()


@dataclass(frozen=True)
class AttackSpec:
    name: str
    #: run(model, x, y, *, norm, eps, settings, seed) -> x_adv
    run: Callable[..., torch.Tensor]
    description: str = ""
    autoattack: bool = True  # counts toward the AutoAttack (worst-case) accuracy


# --- ART (adversarial-robustness-toolbox) adapters ----------------------------------------
def _art_classifier(model: nn.Module, x: torch.Tensor, num_classes: int):
    from art.estimators.classification import PyTorchClassifier

    return PyTorchClassifier(
        model=model, loss=nn.CrossEntropyLoss(), input_shape=tuple(x.shape[1:]), nb_classes=num_classes,
        clip_values=(0.0, 1.0), device_type="gpu" if x.is_cuda else "cpu",
    )


def _num_classes(model: nn.Module, x: torch.Tensor) -> int:
    with torch.no_grad():
        return int(model(x[:1]).shape[1])


def _art_apgd(loss_type: str) -> Callable[..., torch.Tensor]:
    def run(model, x, y, *, norm, eps, settings, seed):
        from art.attacks.evasion import AutoProjectedGradientDescent

        np.random.seed(seed)  # ART draws its random starts from numpy's global generator
        attack = AutoProjectedGradientDescent(
            _art_classifier(model, x, _num_classes(model, x)), norm=np.inf if norm == "linf" else 2,
            eps=float(eps), eps_step=2.0 * float(eps),  # Croce & Hein: initial step 2 eps
            max_iter=settings.apgd_iterations, nb_random_init=settings.apgd_restarts,
            batch_size=settings.batch_size, loss_type=loss_type, verbose=False,
        )
        adv = attack.generate(x.detach().cpu().numpy(), y.detach().cpu().numpy())
        return torch.from_numpy(adv).to(x.device)

    return run


def _art_square(model, x, y, *, norm, eps, settings, seed):
    from art.attacks.evasion import SquareAttack

    np.random.seed(seed)
    attack = SquareAttack(
        _art_classifier(model, x, _num_classes(model, x)), norm=np.inf if norm == "linf" else 2,
        eps=float(eps), max_iter=settings.square_queries, nb_restarts=1, batch_size=settings.batch_size, verbose=False,
    )
    adv = attack.generate(x.detach().cpu().numpy(), y.detach().cpu().numpy())
    return torch.from_numpy(adv).to(x.device)


def _pgd_eval(model, x, y, *, norm, eps, settings, seed):
    return pgd(model, x, y, norm=norm, eps=eps, steps=settings.pgd_steps, step_size=settings.pgd_step_size)


BUILTIN_ATTACKS = [
    AttackSpec("pgd", _pgd_eval, "PGD with random start (dcrobench, pure torch)", autoattack=False),
    AttackSpec("apgd-ce", _art_apgd("cross_entropy"), "APGD, cross-entropy loss (ART)"),
    AttackSpec("apgd-dlr", _art_apgd("difference_logits_ratio"), "APGD, DLR loss (ART)"),
    AttackSpec("square", _art_square, "Square attack, score-based black box (ART)"),
]

def _torchattacks_apgd(loss: str) -> Callable[..., torch.Tensor]:
    def run(model, x, y, *, norm, eps, settings, seed):
        import torchattacks

        attack = torchattacks.APGD(model, norm="Linf" if norm == "linf" else "L2", eps=float(eps),
                                   steps=settings.apgd_iterations, n_restarts=settings.apgd_restarts, loss=loss, seed=seed)
        return attack(x, y)

    return run


#: Registered only when torchattacks is importable (it is not a dependency: 3.5.1 pins requests~=2.25.1).
TORCHATTACKS_ATTACKS = [
    AttackSpec("ta-apgd-ce", _torchattacks_apgd("ce"), "APGD, cross-entropy loss (torchattacks, optional)"),
    AttackSpec("ta-apgd-dlr", _torchattacks_apgd("dlr"), "APGD, DLR loss (torchattacks, optional)"),
]

#: protocol shorthand -> attack list. ART has no FAB-T and no target-rotating APGD-T, so the
#: closest to AutoAttack's "standard" ensemble it offers is APGD-CE + APGD-DLR + Square.
ATTACK_SETS = {
    "paper": ["apgd-ce", "apgd-dlr"],
    "standard": ["apgd-ce", "apgd-dlr", "square"],
}


def evaluate_robustness(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, *, norm: str, eps: float,
                        attacks: list[AttackSpec], settings: Any, seed: int, device: torch.device) -> dict[str, Any]:
    """Clean accuracy, each attack's accuracy and pointwise worst cases on the given test points.

    Every attack runs on every clean-correct point (not only on the survivors of earlier attacks),
    so each attack's own accuracy is reported as well as the worst case.
    """
    model.eval()
    bs = settings.batch_size
    correct: dict[str, torch.Tensor] = {}
    with torch.no_grad():
        preds = torch.cat([model(images[i:i + bs].to(device)).argmax(1).cpu() for i in range(0, len(images), bs)])
    clean = preds == labels
    correct["clean"] = clean
    idx = torch.nonzero(clean).flatten()
    from tqdm.auto import tqdm

    bar = tqdm(attacks, desc=f"attacks {norm}", leave=False, disable=None)
    for k, attack in enumerate(bar):
        bar.set_postfix(attack=attack.name)
        ok = clean.clone()
        for start in range(0, idx.numel(), bs):
            b = idx[start:start + bs]
            x, y = images[b].to(device), labels[b].to(device)
            torch.manual_seed(seed * 1000 + k)
            x_adv = attack.run(model, x, y, norm=norm, eps=eps, settings=settings, seed=seed * 1000 + k)
            check_perturbation(x_adv, x, norm, eps, attack.name)
            with torch.no_grad():
                ok[b] = (model(x_adv).argmax(1) == y).cpu()
        correct[attack.name] = ok
    n = int(labels.numel())

    def acc(ok: torch.Tensor) -> float:
        return int(ok.sum()) / n  # exact ratio of counts, not a float32 mean

    out: dict[str, Any] = {"n": n, "clean_acc": acc(clean)}
    out["attacks"] = {a.name: acc(correct[a.name]) for a in attacks}
    aa = [a.name for a in attacks if a.autoattack]
    if aa:
        out["autoattack_acc"] = acc(torch.stack([correct[name] for name in aa]).all(0))
    if "pgd" in correct:
        out["pgd_acc"] = acc(correct["pgd"])
    out["robust_acc"] = acc(torch.stack(list(correct.values())).all(0))
    return out


def check_perturbation(x_adv: torch.Tensor, x: torch.Tensor, norm: str, eps: float, name: str, tol: float = 1e-4) -> None:
    """An attack that leaves the threat model would inflate robustness claims: refuse it."""
    delta = (x_adv - x).flatten(1)
    size = delta.abs().amax(1) if norm == "linf" else delta.norm(dim=1)
    if (size > eps * (1 + tol) + 1e-6).any() or x_adv.min() < -1e-6 or x_adv.max() > 1 + 1e-6:
        raise RuntimeError(f"attack '{name}' produced inputs outside the {norm} ball of radius {eps} or outside [0, 1]")
