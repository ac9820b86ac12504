"""Import sets distilled by other code bases, so ``dcrobench run --compressed`` scores them.

Formats (each read without unpickling: ``torch.load(weights_only=True)`` or ``numpy.load(allow_pickle=False)``):

- ``mtt``: MTT's (Cazenavette et al.) ``images_best.pt`` and ``labels_best.pt``, one tensor each
  (``lr_best.pt`` may be given too and is ignored);
- ``dc``: the result file of DC / DSA / DM (Zhao et al.), ``{"data": [[images, labels], ...], ...}``,
  one pair per experiment (``experiment`` picks one; default 0);
- ``tensors``: a ``.pt`` holding a dict, list or tuple of two tensors, or ``.npz`` / ``.npy`` files.

Which tensor holds the images and which the labels is decided by content (a floating
``[N, C, H, W]``, ``[N, H, W, C]`` or ``[N, H, W]`` array; an integer ``[N]`` array), never by file
or key names. Images saved in normalised space are mapped back with ``normalized`` (``mean``, ``std``
per channel, or the name of a dataset whose DC-family constants apply), then clipped to [0, 1] (the
clipped fraction is recorded). ZCA-whitened sets (MTT ``--zca``) cannot be undone without the
whitening matrix and are not supported. The imported set is validated like every compressed set
and records its provenance: the user's method label, the source format, every file's SHA-256.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .errors import DataValidationError, DcrobenchError, MethodError, one_line
from .imageset import ImageSet
from .methods import CompressedSet, Provenance, json_safe, validate_compressed

FORMATS = ("mtt", "dc", "tensors")
#: per-channel (mean, std) the DC / DSA / DM / MTT code bases normalise with
NORMALIZATION_PRESETS: dict[str, tuple[list[float], list[float]]] = {
    "mnist": ([0.1307], [0.3081]),
    "cifar10": ([0.4914, 0.4822, 0.4465], [0.2023, 0.1994, 0.2010]),
    "cifar100": ([0.5071, 0.4866, 0.4409], [0.2673, 0.2564, 0.2762]),
    "svhn": ([0.4377, 0.4438, 0.4728], [0.1980, 0.2010, 0.1970]),
}
RANGE_TOLERANCE = 1e-3  # how far outside [0, 1] un-normalised pixels may lie before we refuse them


def parse_normalization(text: str | None, channels: int) -> tuple[list[float], list[float]] | None:
    """``"mean,std"`` (one channel), ``"m1,m2,m3,s1,s2,s3"`` or a preset name; ``None`` = not normalised."""
    if text is None:
        return None
    key = text.strip().lower()
    if key in NORMALIZATION_PRESETS:
        mean, std = NORMALIZATION_PRESETS[key]
    else:
        try:
            values = [float(v) for v in key.split(",")]
        except ValueError:
            raise DcrobenchError(f"--normalized {text!r}: expected MEAN,STD numbers (one pair per channel: "
                                 f"means then stds) or one of {', '.join(NORMALIZATION_PRESETS)}") from None
        if len(values) % 2:
            raise DcrobenchError(f"--normalized {text!r}: give as many stds as means")
        if not all(math.isfinite(v) for v in values):
            raise DcrobenchError(f"--normalized {text!r}: means and stds must be finite numbers")
        mean, std = values[:len(values) // 2], values[len(values) // 2:]
    if len(mean) == 1 and channels > 1:
        mean, std = mean * channels, std * channels
    if len(mean) != channels:
        raise DcrobenchError(f"--normalized gives {len(mean)} channel(s), the dataset has {channels}")
    if any(s <= 0 for s in std):
        raise DcrobenchError("--normalized: every std must be positive")
    return list(mean), list(std)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _load(path: Path) -> Any:
    """One file's content, as tensors / arrays in plain containers; never unpickles objects."""
    if not path.is_file():
        raise DcrobenchError(f"{path}: no such file")
    if path.suffix in (".npz", ".npy"):
        try:
            loaded = np.load(path, allow_pickle=False)
            if isinstance(loaded, np.ndarray):
                arrays = [loaded]
            else:
                with loaded:  # an .npz reads each member when asked: object arrays fail here, not at np.load
                    arrays = [loaded[k] for k in loaded.files]
        except Exception as exc:  # noqa: BLE001 - numpy raises ValueError for pickled object arrays
            raise MethodError(f"{path}: not readable by numpy without unpickling ({one_line(exc)})") from None
        try:
            tensors = [torch.from_numpy(a) for a in arrays]
        except TypeError as exc:  # strings, datetimes: not numbers
            raise MethodError(f"{path}: holds an array that is not numbers ({one_line(exc)})") from None
        return tensors[0] if isinstance(loaded, np.ndarray) else tensors
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - UnpicklingError for objects, RuntimeError for non-zip files
        raise MethodError(f"{path}: not readable with torch.load(weights_only=True), which dcrobench requires "
                          f"(no pickled Python objects): {one_line(exc)}") from None


def _tensors_in(obj: Any) -> list[torch.Tensor]:
    """Every tensor in a (nested) dict / list / tuple, in order."""
    if isinstance(obj, torch.Tensor):
        return [obj]
    if isinstance(obj, dict):
        return [t for v in obj.values() for t in _tensors_in(v)]
    if isinstance(obj, (list, tuple)):
        return [t for v in obj for t in _tensors_in(v)]
    return []


def _split_by_content(tensors: list[torch.Tensor], where: str) -> tuple[torch.Tensor, torch.Tensor]:
    images = [t for t in tensors if t.is_floating_point() and t.ndim in (3, 4)]
    labels = [t for t in tensors if not t.is_floating_point() and t.ndim == 1]
    soft = [t for t in tensors if t.is_floating_point() and t.ndim == 2]
    if len(images) != 1:
        raise MethodError(f"{where}: expected one floating-point image tensor [N, C, H, W], found {len(images)}")
    if not labels and soft:
        raise MethodError(f"{where}: the labels are soft ([N, classes] floats); dcrobench trains on hard labels")
    if len(labels) != 1:
        raise MethodError(f"{where}: expected one integer label vector [N], found {len(labels)}")
    return images[0], labels[0]


def read_images_labels(files: Sequence[Path], fmt: str, experiment: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """The (images, labels) of the files in one of ``FORMATS`` (not yet un-normalised)."""
    if fmt not in FORMATS:
        raise DcrobenchError(f"unknown import format {fmt!r} (expected one of {', '.join(FORMATS)})")
    if not files:
        raise DcrobenchError("give the file(s) to import")
    where = ", ".join(str(f) for f in files)
    contents = [_load(Path(f)) for f in files]
    if fmt == "dc":
        if len(contents) != 1 or not isinstance(contents[0], dict) or not isinstance(contents[0].get("data"), list):
            raise MethodError(f"{where}: a DC/DSA/DM result is one file holding {{'data': [[images, labels], ...]}}")
        runs = contents[0]["data"]
        if not 0 <= experiment < len(runs):
            raise DcrobenchError(f"{where}: experiment {experiment} asked, the file holds {len(runs)} (0-{len(runs) - 1})")
        return _split_by_content(_tensors_in(runs[experiment]), where)
    tensors = [t for c in contents for t in _tensors_in(c)]
    if fmt == "mtt":  # lr_best.pt is a 0-d learning rate: not an image or label tensor
        tensors = [t for t in tensors if t.ndim > 0]
    return _split_by_content(tensors, where)


def to_nchw(images: torch.Tensor, channels: int, where: str) -> torch.Tensor:
    if images.ndim == 3:
        if channels != 1:
            raise MethodError(f"{where}: images are [N, H, W] but the dataset has {channels} channels")
        return images.unsqueeze(1)
    if images.shape[1] == channels:
        return images
    if images.shape[-1] == channels:  # NHWC, as numpy code often saves
        return images.permute(0, 3, 1, 2).contiguous()
    raise MethodError(f"{where}: image tensor of shape {tuple(images.shape)} has no axis of {channels} channels")


def import_set(files: Sequence[str | Path], *, fmt: str, train_set: ImageSet, name: str,
               normalized: tuple[list[float], list[float]] | None = None, experiment: int = 0) -> CompressedSet:
    """A validated ``CompressedSet`` with provenance from externally distilled files (see the module doc)."""
    files = [Path(f) for f in files]
    where = ", ".join(str(f) for f in files)
    if not name or not isinstance(name, str):
        raise DcrobenchError("an imported set needs a method name (--name)")
    images, labels = read_images_labels(files, fmt, experiment)
    images = to_nchw(images.float(), train_set.images.shape[1], where)
    if images.shape[0] != labels.shape[0]:
        raise MethodError(f"{where}: {images.shape[0]} images but {labels.shape[0]} labels")
    if not torch.isfinite(images).all():
        raise MethodError(f"{where}: the images hold NaN or infinite values")
    if normalized is not None:
        mean = torch.tensor(normalized[0]).view(1, -1, 1, 1)
        std = torch.tensor(normalized[1]).view(1, -1, 1, 1)
        images = images * std + mean
    lo, hi = float(images.min()), float(images.max())
    if normalized is None and (lo < -RANGE_TOLERANCE or hi > 1 + RANGE_TOLERANCE):
        raise MethodError(f"{where}: pixel values span [{lo:.3g}, {hi:.3g}], outside [0, 1]: the set looks "
                          f"normalised; give --normalized MEAN,STD (or a preset: {', '.join(NORMALIZATION_PRESETS)})")
    clipped = float(((images < 0) | (images > 1)).float().mean())
    images = images.clamp(0.0, 1.0)
    labels = labels.long()
    comp = CompressedSet(images=images, labels=labels, meta={"imported": True, "clipped_fraction": clipped})
    try:
        validate_compressed(comp, train_set.shape, train_set.num_classes, budget=None)
    except DataValidationError as exc:
        raise MethodError(f"{where}: {exc}") from None
    counts = comp.per_class_counts(train_set.num_classes)
    files_meta = [{"name": f.name, "sha256": _sha256(f), "bytes": f.stat().st_size} for f in files]
    comp.provenance = Provenance(
        method=name, dataset=train_set.name, data_fingerprint=train_set.fingerprint(), method_version="external",
        kind="condensation",
        params=json_safe({"source_format": fmt, "files": files_meta, "normalized": normalized,
                          "experiment": experiment if fmt == "dc" else None}),
        per_class_counts=counts, budget=max(counts), seed=None,
        source={"distribution": "external", "version": "", "plugin": "import-set"})
    return comp


__all__ = ["import_set", "read_images_labels", "parse_normalization", "FORMATS", "NORMALIZATION_PRESETS"]
