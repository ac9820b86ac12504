"""Built-in attacks: PGD (ours), APGD-CE / APGD-DLR / Square (ART), and torchattacks' APGD when installed."""

from importlib.util import find_spec

from dcrobench.attacks import BUILTIN_ATTACKS, TORCHATTACKS_ATTACKS
from dcrobench.hookspecs import hookimpl


@hookimpl
def register_attacks():
    return list(BUILTIN_ATTACKS) + (list(TORCHATTACKS_ATTACKS) if find_spec("torchattacks") else [])
