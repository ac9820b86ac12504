"""PGD with random start (Madry et al.), dcrobench's own torch code: the training attack, also for evaluation."""

from __future__ import annotations

from dcrobench.attacks import AttackSpec, pgd
from dcrobench.hookspecs import hookimpl


def build(model, *, norm, eps, params, seed, device):
    def run(x, y):
        return pgd(model, x, y, norm=norm, eps=eps, steps=params["steps"], step_size=params["step_size"],
                   random_start=params["random_start"])

    return run


PGD = AttackSpec("pgd", build, "PGD with random start on the cross-entropy (dcrobench, pure torch)",
                 defaults={"steps": 20, "step_size": 0.125, "random_start": True})


@hookimpl
def register_attacks():
    return [PGD]
