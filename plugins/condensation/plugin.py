"""Registers the dataset-condensation methods DM, GM, TM, IDM and the robust distillation methods MAT and GUARD."""

from dcrobench.hookspecs import hookimpl

from .dm import DM
from .gm import GM
from .idm import IDM
from .robust_tm import GUARD, MAT
from .tm import TM


@hookimpl
def register_methods():
    return [DM, GM, TM, IDM, MAT, GUARD]
