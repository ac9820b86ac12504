"""The threats DD-RobustBench and BEARD report beside AutoAttack, in dcrobench's own torch code.

- ``fgsm`` — Goodfellow et al. (ICLR 2015): one step of size eps along the gradient's sign (l-inf) or
  its direction (l2), from the clean point.
- ``cw`` — the Carlini & Wagner (S&P 2017) margin loss ``max_{j != y} z_j - z_y`` on the logits,
  maximised by PGD with random start (the "PGD-CW" of Madry et al. and Croce & Hein), l-inf and l2.
- ``vmi-fgsm`` — Wang & He (CVPR 2021): momentum iterative FGSM whose gradient is tuned by the
  variance of gradients sampled in a neighbourhood of radius ``beta * eps``.
- ``jitter`` — Schwinn et al. (2021): PGD on the squared error between the one-hot label and a
  noisy, temperature-scaled softmax, divided by the perturbation's size once a point is
  misclassified, so the attack keeps moving towards confident, small perturbations.
- ``deepfool`` — Moosavi-Dezfooli et al. (CVPR 2016), l2 and l-inf, iterates clipped to [0, 1]: the
  minimal perturbation that changes the decision; its size is reported (median over the
  clean-correct points), and the perturbation, projected onto the eps-ball, gives the accuracy at eps.
- ``transfer-pgd`` — a black-box transfer attack: PGD examples crafted on a *surrogate* model (the
  evaluation's; by default the full-data adversarially trained model of the same protocol cell)
  and evaluated on the target model, which is never differentiated.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from dcrobench.attacks import AttackSpec, per_sample_eps, pgd, project
from dcrobench.hookspecs import hookimpl
from dcrobench_plugins.attacks.deepfool import deepfool


def _direction(grad: torch.Tensor, norm: str) -> torch.Tensor:
    """The steepest-ascent unit step: sign (l-inf) or the l2-normalised gradient."""
    if norm == "linf":
        return grad.sign()
    return grad / per_sample_eps(grad.flatten(1).norm(dim=1).clamp_min(1e-12), grad)


def cw_margin(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Carlini-Wagner's margin ``max_{j != y} z_j - z_y`` per sample (positive = misclassified)."""
    true = logits.gather(1, y[:, None]).squeeze(1)
    other = logits.masked_fill(F.one_hot(y, logits.shape[1]).bool(), float("-inf")).amax(1)
    return other - true


def _input_grad(model, x: torch.Tensor, y: torch.Tensor, loss) -> torch.Tensor:
    with torch.enable_grad():
        x = x.detach().requires_grad_(True)
        return torch.autograd.grad(loss(model(x), y).sum(), x)[0]


def vmi_fgsm(model, x: torch.Tensor, y: torch.Tensor, *, norm: str, eps: float, steps: int, decay: float,
             samples: int, beta: float, gen: torch.Generator) -> torch.Tensor:
    """VMI-FGSM (Wang & He 2021, Algorithm 1), step ``eps / steps``; the l2 variant steps along the
    normalised accumulated gradient and samples the neighbourhood in the l2 ball."""
    ce = lambda z, t: F.cross_entropy(z, t, reduction="none")  # noqa: E731
    alpha = eps / steps
    g = torch.zeros_like(x)
    v = torch.zeros_like(x)
    x_adv = x.clone()
    for _ in range(steps):
        grad = _input_grad(model, x_adv, y, ce)
        tuned = grad + v
        g = decay * g + tuned / per_sample_eps(tuned.abs().flatten(1).mean(1).clamp_min(1e-12), tuned)
        sampled = torch.zeros_like(x)
        for _ in range(samples):
            if norm == "linf":
                r = (torch.rand(x.shape, generator=gen) * 2 - 1).to(x.device) * beta * eps
            else:
                u = torch.randn(x.shape, generator=gen).to(x.device)
                rad = torch.rand(x.shape[0], generator=gen).to(x.device) * beta * eps
                r = u / per_sample_eps(u.flatten(1).norm(dim=1).clamp_min(1e-12), u) * per_sample_eps(rad, u)
            sampled += _input_grad(model, x_adv + r, y, ce)
        v = sampled / samples - grad
        x_adv = project(x_adv + alpha * _direction(g, norm), x, norm, per_sample_eps(eps, x))
    return x_adv.detach()


def jitter_loss(scale: float, std: float, gen: torch.Generator):
    """Jitter's loss on the logits: ``||softmax(scale * z / ||z||_inf) + N(0, std^2) - onehot(y)||^2``."""
    def loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        z = logits / logits.abs().amax(1, keepdim=True).clamp_min(1e-12)
        p = torch.softmax(scale * z, dim=1)
        p = p + std * torch.randn(p.shape, generator=gen).to(p.device)
        return ((p - F.one_hot(y, logits.shape[1]).to(p.dtype)) ** 2).sum(1)

    return loss


def jitter(model, x: torch.Tensor, y: torch.Tensor, *, norm: str, eps: float, steps: int, step_size: float,
           scale: float, std: float, gen: torch.Generator) -> torch.Tensor:
    """The Jitter attack (Schwinn et al. 2021): random start, ``steps`` ascent steps of ``step_size * eps``."""
    eps_b = per_sample_eps(eps, x)
    if norm == "linf":
        start = (torch.rand(x.shape, generator=gen).to(x.device) * 2 - 1) * eps
    else:
        start = torch.zeros_like(x)
    x_adv = project(x + start, x, norm, eps_b)
    base = jitter_loss(scale, std, gen)
    for _ in range(steps):
        with torch.enable_grad():
            xa = x_adv.detach().requires_grad_(True)
            logits = model(xa)
            cost = base(logits, y)
            wrong = logits.argmax(1) != y
            if bool(wrong.any()):  # misclassified: prefer small perturbations
                delta = (xa - x).flatten(1)
                size = delta.abs().amax(1) if norm == "linf" else delta.norm(dim=1)
                cost = torch.where(wrong, cost / size.clamp_min(1e-12), cost)
            grad = torch.autograd.grad(cost.sum(), xa)[0]
        x_adv = project(x_adv + step_size * eps * _direction(grad, norm), x, norm, eps_b).detach()
    return x_adv


def _fgsm(model, *, norm, eps, params, seed, device):
    return lambda x, y: pgd(model, x, y, norm=norm, eps=eps, steps=1, step_size=1.0, random_start=False)


def _cw(model, *, norm, eps, params, seed, device):
    return lambda x, y: pgd(model, x, y, norm=norm, eps=eps, steps=params["steps"], step_size=params["step_size"],
                            random_start=params["random_start"], loss=cw_margin)


def _vmi(model, *, norm, eps, params, seed, device):
    gen = torch.Generator().manual_seed(seed)
    return lambda x, y: vmi_fgsm(model, x, y, norm=norm, eps=eps, steps=params["steps"], decay=params["decay"],
                                 samples=params["samples"], beta=params["beta"], gen=gen)


def _jitter(model, *, norm, eps, params, seed, device):
    gen = torch.Generator().manual_seed(seed)
    return lambda x, y: jitter(model, x, y, norm=norm, eps=eps, steps=params["steps"], step_size=params["step_size"],
                               scale=params["scale"], std=params["std"], gen=gen)


def _deepfool(model, *, norm, eps, params, seed, device):
    def run(x, y):
        res = deepfool(model, x, max_iter=params["max_iter"], overshoot=params["overshoot"], norm=norm,
                       clip=params["clip"])
        return project(x + res.perturbation.to(x.device), x, norm, per_sample_eps(float(eps), x)), res.radius

    return run


def _transfer_pgd(model, *, norm, eps, params, seed, device, surrogate):
    # the target ``model`` is only ever evaluated (by the engine), never differentiated here
    return lambda x, y: pgd(surrogate, x, y, norm=norm, eps=eps, steps=params["steps"],
                            step_size=params["step_size"], random_start=params["random_start"])


def _check_vmi(params):
    from dcrobench.errors import ProtocolError

    if not 0 < params["decay"] <= 1:
        raise ProtocolError(f"attacks.vmi-fgsm.decay: must lie in (0, 1], got {params['decay']!r}")


ATTACKS = [
    AttackSpec("fgsm", _fgsm, "FGSM (Goodfellow et al. 2015): one eps step along the gradient's sign / direction"),
    AttackSpec("cw", _cw, "PGD on the Carlini-Wagner logit margin max_{j!=y} z_j - z_y (l-inf and l2)",
               defaults={"steps": 20, "step_size": 0.125, "random_start": True}),
    AttackSpec("vmi-fgsm", _vmi, "VMI-FGSM (Wang & He 2021): variance-tuned momentum iterative FGSM",
               defaults={"steps": 10, "decay": 1.0, "samples": 20, "beta": 1.5}, check=_check_vmi),
    AttackSpec("jitter", _jitter, "Jitter (Schwinn et al. 2021): PGD on a noisy scaled-softmax error, size-aware",
               defaults={"steps": 10, "step_size": 0.25, "scale": 10.0, "std": 0.1}),
    AttackSpec("deepfool", _deepfool, "DeepFool (Moosavi-Dezfooli et al. 2016): minimal perturbation, median reported",
               defaults={"max_iter": 50, "overshoot": 0.02, "clip": True}),
    AttackSpec("transfer-pgd", _transfer_pgd, "transfer: PGD crafted on the surrogate (full-data adversarially "
               "trained model of the same cell), evaluated on the target",
               defaults={"steps": 20, "step_size": 0.125, "random_start": True}, needs_surrogate=True),
]


@hookimpl
def register_attacks():
    return list(ATTACKS)


__all__ = ["ATTACKS", "cw_margin", "vmi_fgsm", "jitter", "jitter_loss"]
