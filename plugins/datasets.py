"""Built-in datasets."""

from dcrobench.datasets import BUILTIN_DATASETS
from dcrobench.hookspecs import hookimpl


@hookimpl
def register_datasets():
    return list(BUILTIN_DATASETS)
