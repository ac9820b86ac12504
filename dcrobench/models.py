"""The model contract: a ``ModelSpec`` names an architecture and how to build it.

Builders take ``(channels, size, num_classes, mean, std, **params)`` and return a module taking
pixels in [0, 1] (normalisation happens inside). Models that coreset methods use as proxies also
expose ``embed`` (input -> penultimate embedding) and ``classifier`` (the last ``nn.Linear``).
The architectures themselves are plugins (``dcrobench_plugins.models``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import nn


@dataclass(frozen=True)
class ModelSpec:
    name: str
    build: Callable[..., nn.Module]  # build(channels, size, num_classes, mean, std, **params)
    description: str = ""
