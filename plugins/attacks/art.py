"""APGD and Square from the Adversarial Robustness Toolbox: optional (``pip install 'dcrobench[art]'``).

Registered only when ART is installed, under their own names, for comparisons with the official
AutoAttack (``benchmarks/perf/attack_engine.py``). ART works on numpy arrays, so every batch makes
a round trip off the device.
"""

from __future__ import annotations

from importlib.util import find_spec

import numpy as np
import torch
from torch import nn

from dcrobench.attacks import AttackSpec
from dcrobench.hookspecs import hookimpl


def _classifier(model: nn.Module, x: torch.Tensor):
    from art.estimators.classification import PyTorchClassifier

    with torch.no_grad():
        classes = int(model(x[:1]).shape[1])
    return PyTorchClassifier(model=model, loss=nn.CrossEntropyLoss(), input_shape=tuple(x.shape[1:]), nb_classes=classes,
                             clip_values=(0.0, 1.0), device_type="gpu" if x.is_cuda else "cpu")


def _generate(attack, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    with torch.enable_grad():  # the engine runs attacks under no_grad; ART's gradients need it on
        adv = attack.generate(x.detach().cpu().numpy(), y.detach().cpu().numpy())
    return torch.from_numpy(adv).to(x.device)


def _apgd(loss_type: str):
    def build(model, *, norm, eps, params, seed, device):
        from art.attacks.evasion import AutoProjectedGradientDescent

        def run(x, y):
            np.random.seed(seed)  # ART draws its random starts from numpy's global generator
            attack = AutoProjectedGradientDescent(
                _classifier(model, x), norm=np.inf if norm == "linf" else 2, eps=float(eps), eps_step=2.0 * float(eps),
                max_iter=params["iterations"], nb_random_init=params["restarts"], batch_size=x.shape[0],
                loss_type=loss_type, verbose=False)
            return _generate(attack, x, y)

        return run

    return build


def _square(model, *, norm, eps, params, seed, device):
    from art.attacks.evasion import SquareAttack

    def run(x, y):
        np.random.seed(seed)
        return _generate(SquareAttack(_classifier(model, x), norm=np.inf if norm == "linf" else 2, eps=float(eps),
                                      max_iter=params["queries"], nb_restarts=1, batch_size=x.shape[0], verbose=False),
                         x, y)

    return run


ATTACKS = [
    AttackSpec("art-apgd-ce", _apgd("cross_entropy"), "APGD-CE re-implemented by ART (optional)",
               defaults={"iterations": 100, "restarts": 1}),
    AttackSpec("art-apgd-dlr", _apgd("difference_logits_ratio"), "APGD-DLR re-implemented by ART (optional)",
               defaults={"iterations": 100, "restarts": 1}),
    AttackSpec("art-square", _square, "Square attack re-implemented by ART (optional)", defaults={"queries": 5000}),
]


@hookimpl
def register_attacks():
    return list(ATTACKS) if find_spec("art") else []
