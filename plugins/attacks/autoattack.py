"""The official AutoAttack of Croce & Hein (``pyautoattack``): its components and its two usual sets.

Each component is built the way ``pyautoattack.AutoAttack`` builds it (same classes, constructor
arguments and per-batch seeding), so dcrobench's cascade over them gives AutoAttack's own robust
flags. The defaults are AutoAttack's constructor values; ``standard`` pins the settings of
AutoAttack's standard version (``_set_version('standard')``), ``paper`` is APGD-CE + APGD-DLR as
in the paper (Chen & Selvan §4), with the protocol's settings.

Iterations are given to the constructors: APGD derives its step-size checkpoints from ``n_iter``
when it is built, so changing ``n_iter`` afterwards would keep a 100-iteration schedule.
"""

from __future__ import annotations

import logging

import torch

from dcrobench.attacks import AttackSet, AttackSpec
from dcrobench.hookspecs import hookimpl

NORM_NAMES = {"linf": "Linf", "l2": "L2"}
_LOGGER = logging.getLogger("auto-attack")


def _num_classes(model, x) -> int:
    with torch.no_grad():
        return int(model(x[:1]).shape[1])


def _apgd(loss: str):
    def build(model, *, norm, eps, params, seed, device):
        from pyautoattack.autopgd_base import APGDAttack

        attack = APGDAttack(model, n_iter=params["iterations"], norm=NORM_NAMES[norm], n_restarts=params["restarts"],
                            eps=float(eps), seed=seed, loss=loss, eot_iter=1, rho=params["rho"], verbose=False,
                            device=device, logger=_LOGGER)
        return lambda x, y: attack.perturb(x, y)

    return build


def _apgd_targeted(model, *, norm, eps, params, seed, device):
    from pyautoattack.autopgd_base import APGDAttack_targeted

    attack = APGDAttack_targeted(model, n_iter=params["iterations"], norm=NORM_NAMES[norm],
                                 n_restarts=params["restarts"], eps=float(eps), seed=seed, eot_iter=1, rho=params["rho"],
                                 verbose=False, device=device, logger=_LOGGER)

    def run(x, y):
        attack.n_target_classes = min(params["targets"], _num_classes(model, x) - 1)
        return attack.perturb(x, y)

    return run


def _fab_targeted(model, *, norm, eps, params, seed, device):
    from pyautoattack.fab_pt import FABAttack_PT

    attack = FABAttack_PT(model, norm=NORM_NAMES[norm], n_restarts=params["restarts"], n_iter=params["iterations"],
                          eps=float(eps), seed=seed, verbose=False, device=device)
    attack.targeted = True

    def run(x, y):
        attack.n_target_classes = min(params["targets"], _num_classes(model, x) - 1)
        return attack.perturb(x, y)

    return run


def _square(model, *, norm, eps, params, seed, device):
    from pyautoattack.square import SquareAttack

    attack = SquareAttack(model, p_init=params["p_init"], n_queries=params["queries"], eps=float(eps),
                          norm=NORM_NAMES[norm], n_restarts=params["restarts"], seed=seed, verbose=False,
                          device=device, resc_schedule=False)
    return lambda x, y: attack.perturb(x, y)


def _check_p_init(params):
    from dcrobench.errors import ProtocolError

    if not 0 < params["p_init"] <= 1:
        raise ProtocolError(f"attacks.square.p_init: must lie in (0, 1], got {params['p_init']!r}")


def _check_rho(params):
    from dcrobench.errors import ProtocolError

    if not 0 < params["rho"] < 1:
        raise ProtocolError(f"attacks: APGD's rho must lie in (0, 1), got {params['rho']!r}")


APGD = {"iterations": 100, "restarts": 5, "rho": 0.75}  # AutoAttack's constructor values
ATTACKS = [
    AttackSpec("apgd-ce", _apgd("ce"), "APGD on the cross-entropy (official AutoAttack, pyautoattack)",
               defaults=dict(APGD), check=_check_rho, autoattack=True),
    AttackSpec("apgd-dlr", _apgd("dlr"), "APGD on the DLR loss (official AutoAttack, pyautoattack)",
               defaults=dict(APGD), check=_check_rho, autoattack=True),
    AttackSpec("apgd-t", _apgd_targeted, "targeted APGD on the DLR loss, top classes in turn (pyautoattack)",
               defaults={"iterations": 100, "restarts": 1, "targets": 9, "rho": 0.75}, check=_check_rho, autoattack=True),
    AttackSpec("fab-t", _fab_targeted, "targeted FAB, minimal-norm boundary attack (pyautoattack)",
               defaults={"iterations": 100, "restarts": 1, "targets": 9}, autoattack=True),
    AttackSpec("square", _square, "Square attack, score-based black box (pyautoattack)",
               defaults={"queries": 5000, "p_init": 0.8, "restarts": 1}, check=_check_p_init, autoattack=True),
]

SETS = [
    AttackSet("paper", ("apgd-ce", "apgd-dlr"), "APGD-CE then APGD-DLR, the paper's AutoAttack setting"),
    AttackSet("standard", ("apgd-ce", "apgd-t", "fab-t", "square"),
              "AutoAttack's standard version with its own settings (APGD-CE, APGD-T, FAB-T, Square)",
              pinned={"apgd-ce": {"iterations": 100, "restarts": 1}, "apgd-t": {"iterations": 100, "restarts": 1, "targets": 9},
                      "fab-t": {"iterations": 100, "restarts": 1, "targets": 9}, "square": {"queries": 5000}}),
]


@hookimpl
def register_attacks():
    return [*ATTACKS, *SETS]
