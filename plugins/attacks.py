"""Built-in attacks."""

from dcrobench.attacks import BUILTIN_ATTACKS
from dcrobench.hookspecs import hookimpl


@hookimpl
def register_attacks():
    return list(BUILTIN_ATTACKS)
