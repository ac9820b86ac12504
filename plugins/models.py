"""Built-in model architectures (MLP, ConvNet, ResNet-18). Every model takes pixels in [0, 1]; normalisation
happens inside, with the dataset's mean and std, unless ``normalize: false`` (``model_params``) feeds the
[0, 1] pixels as they are, as the paper authors' code does.

Each model exposes ``features`` (input -> penultimate embedding) and ``classifier`` (the last
``nn.Linear``), which the coreset methods use for embeddings and last-layer gradients.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
import torch.nn.functional as F

from dcrobench.hookspecs import hookimpl
from dcrobench.models import ModelSpec


class Normalize(nn.Module):
    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


def input_normalization(mean: Sequence[float], std: Sequence[float], normalize: bool) -> Normalize:
    """The dataset's standardisation, or the identity (mean 0, std 1) when ``normalize`` is false."""
    if not isinstance(normalize, bool):
        raise ValueError(f"model parameter normalize must be true or false, got {normalize!r}")
    if normalize:
        return Normalize(mean, std)
    return Normalize([0.0] * len(mean), [1.0] * len(std))


class Classifier(nn.Module):
    """normalize -> features -> classifier."""

    def __init__(self, normalize: Normalize, features: nn.Module, feature_dim: int, num_classes: int) -> None:
        super().__init__()
        self.normalize = normalize
        self.features = features
        self.classifier = nn.Linear(feature_dim, num_classes)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(self.normalize(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.embed(x))


def build_mlp(channels: int, size: int, num_classes: int, mean, std, hidden: int = 128, layers: int = 2,
              normalize: bool = True) -> Classifier:
    mods: list[nn.Module] = [nn.Flatten()]
    width = channels * size * size
    for _ in range(layers):
        mods += [nn.Linear(width, hidden), nn.ReLU(inplace=True)]
        width = hidden
    return Classifier(input_normalization(mean, std, normalize), nn.Sequential(*mods), width, num_classes)


def build_convnet(channels: int, size: int, num_classes: int, mean, std, width: int = 128, depth: int = 3,
                  norm: str = "instancenorm", normalize: bool = True) -> Classifier:
    """The dataset-condensation ConvNet: depth x [conv3x3(width), norm, ReLU, avgpool 2]."""
    mods: list[nn.Module] = []
    c, s = channels, size
    for _ in range(depth):
        mods.append(nn.Conv2d(c, width, kernel_size=3, padding=1))
        if norm == "instancenorm":  # GroupNorm with one group per channel = affine instance norm
            mods.append(nn.GroupNorm(width, width, affine=True))
        elif norm == "batchnorm":
            mods.append(nn.BatchNorm2d(width))
        elif norm != "none":
            raise ValueError(f"unknown convnet norm '{norm}' (instancenorm, batchnorm, none)")
        mods.append(nn.ReLU(inplace=True))
        if s >= 2:
            mods.append(nn.AvgPool2d(2, 2))
            s //= 2
        c = width
    mods.append(nn.Flatten())
    return Classifier(input_normalization(mean, std, normalize), nn.Sequential(*mods), width * s * s, num_classes)


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


def build_resnet18(channels: int, size: int, num_classes: int, mean, std, width: int = 64,
                   normalize: bool = True) -> Classifier:
    """ResNet-18 with the CIFAR stem (3x3 conv, stride 1, no max-pool)."""
    mods: list[nn.Module] = [nn.Conv2d(channels, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True)]
    cin = width
    for i, mult in enumerate((1, 2, 4, 8)):
        cout = width * mult
        for j in range(2):
            mods.append(BasicBlock(cin, cout, 2 if (i > 0 and j == 0) else 1))
            cin = cout
    mods += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
    return Classifier(input_normalization(mean, std, normalize), nn.Sequential(*mods), cin, num_classes)


BUILTIN_MODELS = [
    ModelSpec("mlp", build_mlp, "MLP, 2 hidden layers of 128 (paper appendix C, MNIST)"),
    ModelSpec("convnet", build_convnet, "ConvNet: 3 x [conv 128 3x3, instance norm, ReLU, avg-pool] (appendix C, CIFAR10)"),
    ModelSpec("resnet18", build_resnet18, "ResNet-18, CIFAR-style stem (paper Table 1)"),
]


@hookimpl
def register_models():
    return list(BUILTIN_MODELS)
