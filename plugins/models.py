"""Built-in model architectures."""

from dcrobench.hookspecs import hookimpl
from dcrobench.models import BUILTIN_MODELS


@hookimpl
def register_models():
    return list(BUILTIN_MODELS)
