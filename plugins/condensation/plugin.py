"""Registers the dataset-condensation methods DM, GM and TM."""

from dcrobench.hookspecs import hookimpl

from .dm import DM
from .gm import GM
from .tm import TM


@hookimpl
def register_methods():
    return [DM, GM, TM]
