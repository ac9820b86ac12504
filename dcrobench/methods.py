"""The compression-method contract: ``CompressionMethod.compress`` returns a ``CompressedSet``.

A method receives the training set (images in [0, 1], labels), a per-class budget (images per
class, the dataset-condensation convention), a seed and a device. It returns images, labels,
optional per-sample weights (used by the weighted training loss), the chosen indices for selection
methods, and metadata. ``CompressionMethod.run`` wraps ``compress`` with the checks and the
bookkeeping every method shares (budget validation, timing, realised per-class counts), so a
plugin only writes the algorithm.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch

from .errors import BudgetError, MethodError
from .imageset import ImageSet

COMPRESSED_FORMAT_VERSION = 1


@dataclass
class CompressedSet:
    images: torch.Tensor
    labels: torch.Tensor
    weights: torch.Tensor | None = None
    indices: torch.Tensor | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def per_class_counts(self, num_classes: int) -> list[int]:
        return torch.bincount(self.labels.cpu(), minlength=num_classes).tolist()

    def save(self, path: str | Path) -> None:
        """Tensors plus JSON metadata, readable with ``torch.load(weights_only=True)``."""
        from .fileio import atomic_torch_save

        payload: dict[str, Any] = {
            "format_version": COMPRESSED_FORMAT_VERSION,
            "images": self.images.detach().cpu().float(),
            "labels": self.labels.detach().cpu().long(),
            "meta_json": json.dumps(self.meta, sort_keys=True),
        }
        if self.weights is not None:
            payload["weights"] = self.weights.detach().cpu().float()
        if self.indices is not None:
            payload["indices"] = self.indices.detach().cpu().long()
        atomic_torch_save(payload, Path(path))

    @classmethod
    def load(cls, path: str | Path) -> CompressedSet:
        path = Path(path)
        try:
            payload = torch.load(path, map_location="cpu", weights_only=True)
            meta = json.loads(payload["meta_json"])
            return cls(
                images=payload["images"],
                labels=payload["labels"],
                weights=payload.get("weights"),
                indices=payload.get("indices"),
                meta=meta,
            )
        except FileNotFoundError:
            raise MethodError(f"compressed-set file not found: {path}") from None
        except Exception as exc:  # corrupt, truncated or not ours
            raise MethodError(f"cannot read compressed-set file {path}: {exc}") from exc


class CompressionMethod:
    """Base class of every compression method (built-in or third-party).

    Subclasses set ``name`` (CLI name), ``kind`` and override ``compress``. Constructor keyword
    arguments are the method's parameters; the protocol file supplies them (``methods.<name>``),
    so they are part of the recorded, hashed protocol.
    """

    name: ClassVar[str]
    version: ClassVar[str] = "1"
    kind: ClassVar[str] = "selection"  # "selection" | "condensation" | "baseline"
    description: ClassVar[str] = ""
    #: selection methods pick at most the class size; condensation methods may synthesise any number.
    budget_limited_by_class: ClassVar[bool] = True
    #: ``False`` for methods that ignore the budget (the full set): records carry no budget then.
    uses_budget: ClassVar[bool] = True
    #: ``False`` when storing the compressed set in the stage cache costs more than recomputing it.
    cache_stage: ClassVar[bool] = True
    #: ``True`` when the result depends on the seed (random, proxy-model based, condensation).
    uses_seed: ClassVar[bool] = True
    default_params: ClassVar[dict[str, Any]] = {}

    def __init__(self, **params: Any) -> None:
        unknown = set(params) - set(self.default_params)
        if unknown:
            from .names import unknown_name_message

            msgs = [unknown_name_message(f"parameter of {self.name}", u, self.default_params) for u in sorted(unknown)]
            raise MethodError("; ".join(msgs))
        self.params: dict[str, Any] = {**self.default_params, **params}

    def compress(self, data: ImageSet, budget: int, seed: int, device: torch.device) -> CompressedSet:
        raise NotImplementedError

    def diagnostics(self, compressed: CompressedSet, *, eps: float, norm: str) -> dict[str, Any]:
        """Method-specific checks that need the attack radius (e.g. MCS's ZIP); stored in the record."""
        return {}

    def run(self, data: ImageSet, budget: int, seed: int, device: torch.device) -> CompressedSet:
        """Validate the request, call ``compress``, check the result and fill common metadata."""
        if self.uses_budget:
            check_budget(data, budget, self.budget_limited_by_class, self.name)
        start = time.perf_counter()
        try:
            result = self.compress(data, budget, seed, device)
        except (BudgetError, MethodError):
            raise
        except Exception as exc:
            raise MethodError(f"method '{self.name}' failed: {type(exc).__name__}: {exc}") from exc
        elapsed = time.perf_counter() - start
        validate_compressed(result, data, self.name)
        result.meta.setdefault("method", self.name)
        result.meta.setdefault("method_version", self.version)
        result.meta.setdefault("kind", self.kind)
        result.meta["params"] = json_safe(self.params)
        result.meta["per_class_counts"] = result.per_class_counts(data.num_classes)
        result.meta.setdefault("compress_s", elapsed)
        return result


def check_budget(data: ImageSet, budget: int, limited_by_class: bool, method: str) -> None:
    if budget < 1:
        raise BudgetError(f"budget must be at least 1 image per class, got {budget}")
    if limited_by_class:
        counts = data.class_counts()
        smallest = min(c for c in counts)
        if budget > smallest:
            cls = counts.index(smallest)
            raise BudgetError(
                f"budget {budget} images per class is larger than class {cls} of '{data.name}', "
                f"which has {smallest} training images; '{method}' selects real images, "
                f"so use --budget {smallest} or less"
            )


def validate_compressed(result: CompressedSet, data: ImageSet, method: str) -> None:
    def fail(msg: str) -> None:
        raise MethodError(f"method '{method}' returned an invalid compressed set: {msg}")

    if not isinstance(result, CompressedSet):
        fail(f"expected CompressedSet, got {type(result).__name__}")
    n = len(result)
    if result.images.shape[1:] != data.images.shape[1:] or result.images.shape[0] != n:
        fail(f"images have shape {tuple(result.images.shape)}, expected [{n}, {', '.join(map(str, data.shape))}]")
    if n == 0:
        fail("it is empty")
    if not torch.isfinite(result.images).all():
        fail("images contain NaN or inf")
    lo, hi = float(result.images.min()), float(result.images.max())
    if lo < 0.0 or hi > 1.0:
        fail(f"pixels must lie in [0, 1], got [{lo:.3g}, {hi:.3g}]")
    if result.labels.min() < 0 or result.labels.max() >= data.num_classes:
        fail("labels outside the dataset's classes")
    if result.weights is not None:
        if result.weights.shape != (n,) or not torch.isfinite(result.weights).all() or (result.weights < 0).any():
            fail("weights must be one finite non-negative number per image")
    if result.indices is not None:
        idx = result.indices
        if idx.shape != (n,):
            fail("indices must give one training index per image")
        if idx.unique().numel() != n:
            fail("indices are not unique")
        if idx.min() < 0 or idx.max() >= len(data):
            fail("indices outside the training set")
        if not torch.equal(data.labels[idx.cpu()], result.labels.cpu()):
            fail("labels do not match the labels of the chosen indices")


def json_safe(value: Any) -> Any:
    """Parameters as plain JSON values (records and hashes need them)."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if hasattr(value, "__dataclass_fields__"):
        from dataclasses import asdict

        return json_safe(asdict(value))
    return str(value)


def select_per_class(data: ImageSet, indices_per_class: dict[int, torch.Tensor],
                     weights_per_class: dict[int, torch.Tensor] | None = None,
                     meta: dict[str, Any] | None = None) -> CompressedSet:
    """Build a CompressedSet from chosen training indices (and optional weights) per class."""
    classes = sorted(indices_per_class)
    indices = torch.cat([indices_per_class[c].long().cpu() for c in classes])
    weights = None
    if weights_per_class is not None:
        weights = torch.cat([weights_per_class[c].float().cpu() for c in classes])
    return CompressedSet(
        images=data.images[indices],
        labels=data.labels[indices],
        weights=weights,
        indices=indices,
        meta=dict(meta or {}),
    )
